from apiflask import APIBlueprint

bp = APIBlueprint("ops", __name__, tag="Operations")

from . import routes  # noqa: E402,F401
