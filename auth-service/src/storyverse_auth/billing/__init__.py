"""Plans: a parent asks for a plan change, the billing provider confirms it with a signed webhook (issue 20)."""

from apiflask import APIBlueprint

bp = APIBlueprint("billing", __name__, url_prefix="/api/auth", tag="Plans")

from . import routes  # noqa: E402,F401
