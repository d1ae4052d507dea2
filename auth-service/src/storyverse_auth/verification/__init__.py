"""E-mail verification: a parent proves the address before creating children or giving consent (issue 20)."""

from apiflask import APIBlueprint

bp = APIBlueprint("verification", __name__, url_prefix="/api/auth/email", tag="E-mail verification")

from . import routes  # noqa: E402,F401
