from apiflask import APIBlueprint

bp = APIBlueprint("children", __name__, url_prefix="/api/auth/children", tag="Children")

from . import routes  # noqa: E402,F401
