from apiflask import APIBlueprint

# cli_group=None: `flask create-admin EMAIL` is a top-level command.
bp = APIBlueprint("admin", __name__, url_prefix="/api/auth/admin", tag="Admin", cli_group=None)

from . import cli, routes  # noqa: E402,F401
