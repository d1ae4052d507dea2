"""Parent MFA: TOTP (RFC 6238) with hashed recovery codes, step-up for sensitive actions, ``amr`` in tokens."""

from apiflask import APIBlueprint

bp = APIBlueprint("mfa", __name__, url_prefix="/api/auth/mfa", tag="MFA")

from . import routes  # noqa: E402,F401
