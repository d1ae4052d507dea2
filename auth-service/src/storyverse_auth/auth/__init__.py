from apiflask import APIBlueprint

bp = APIBlueprint("auth", __name__, url_prefix="/api/auth", tag="Auth")

from . import routes  # noqa: E402,F401
