from apiflask import APIBlueprint

bp = APIBlueprint("wellknown", __name__, url_prefix="/.well-known", tag="Discovery")

from . import routes  # noqa: E402,F401
