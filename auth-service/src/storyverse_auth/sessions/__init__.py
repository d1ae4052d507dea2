from apiflask import APIBlueprint

bp = APIBlueprint("sessions", __name__, url_prefix="/api/auth/sessions", tag="Sessions")

from . import routes  # noqa: E402,F401
