from apiflask import APIBlueprint

bp = APIBlueprint("usage", __name__, url_prefix="/api/auth/usage", tag="Usage", cli_group="usage")

from . import cli, routes  # noqa: E402,F401
