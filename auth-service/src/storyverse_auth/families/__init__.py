from apiflask import APIBlueprint

bp = APIBlueprint("families", __name__, url_prefix="/api/auth/family", tag="Family")

from . import routes  # noqa: E402,F401
