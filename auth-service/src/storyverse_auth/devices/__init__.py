from apiflask import APIBlueprint

bp = APIBlueprint("devices", __name__, url_prefix="/api/auth", tag="Child sign-in")

from . import routes  # noqa: E402,F401
