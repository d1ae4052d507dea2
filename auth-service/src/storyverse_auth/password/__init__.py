from apiflask import APIBlueprint

bp = APIBlueprint("password", __name__, url_prefix="/api/auth/password", tag="Password")

from . import routes  # noqa: E402,F401
