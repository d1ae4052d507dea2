"""Privacy: consent withdrawal, the family's data export, parent account deletion with a grace period (issue 20)."""

from apiflask import APIBlueprint

bp = APIBlueprint("privacy", __name__, url_prefix="/api/auth", tag="Privacy", cli_group="privacy")

from . import routes  # noqa: E402,F401
