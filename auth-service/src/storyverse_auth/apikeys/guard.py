"""Tokens exchanged from an API key (they carry a ``plan`` claim) reach the gateway's APIs, not account management.

The check runs before every auth-service request that carries a bearer token. It reads the token's payload without
verifying it: it can only *refuse* (a forged token that passes here still meets the real verification), so a
cheap peek is safe, and a genuine key token cannot drop its ``plan`` claim without breaking its signature.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from flask import request

from . import errors

PLAN_CLAIM = "plan"
# Auth-service endpoints an API-key token may call (each checks its own scope).
ALLOWED_PATHS = frozenset({"/api/auth/usage"})


def is_api_key_token(claims: dict[str, Any]) -> bool:
    return PLAN_CLAIM in claims


def _peek(token: str) -> dict[str, Any] | None:
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (binascii.Error, ValueError):
        return None
    return payload if isinstance(payload, dict) else None


def refuse_api_key_tokens() -> None:
    """``before_app_request``: 403 for an API-key token outside ALLOWED_PATHS under /api/auth/."""
    header = request.headers.get("Authorization", "")
    if not header[:7].lower() == "bearer " or not request.path.startswith("/api/auth/"):
        return
    if request.path in ALLOWED_PATHS:
        return
    claims = _peek(header[7:].strip())
    if claims is not None and is_api_key_token(claims):
        raise errors.api_key_token_not_allowed()
