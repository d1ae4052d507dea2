"""Bearer authentication for the service's own endpoints (me, logout, sessions, password change)."""

from __future__ import annotations

from typing import Any

from apiflask import HTTPTokenAuth

from .. import metrics
from ..errors import APIError
from ..sessions import service as sessions
from ..tokens.access import decode_access_token

bearer = HTTPTokenAuth(scheme="Bearer", description="An access token issued by /api/auth/login or /refresh.")


@bearer.verify_token
def _verify(token: str) -> dict[str, Any]:
    try:
        if not token:
            raise APIError.unauthenticated()
        claims = decode_access_token(token)
        if sessions.is_revoked(claims):
            raise APIError.token_revoked()
    except APIError as exc:
        metrics.inc("sv_auth_failed_attempts_total", reason=exc.code)
        raise
    return claims


def current_claims() -> dict[str, Any]:
    return bearer.current_user
