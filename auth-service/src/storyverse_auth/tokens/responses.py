"""Token bodies: a new session (child sign-in, device grant, co-parent join), a fresh access token for the caller's
current session (after creating a child, so its ``children`` claim is current), and a refresh's answer."""

from __future__ import annotations

import uuid
from typing import Any

from flask import request

from .. import metrics
from ..models import Account
from ..sessions import service as sessions
from .access import FRESH_SESSION_AMR, IssuedAccessToken, Principal, issue_access_token


def new_session(account: Account) -> dict[str, Any]:
    """Create a session for ``account`` and return the TokenOut body (the caller commits)."""
    session, refresh_token = sessions.create_session(account.id, request.user_agent.string, request.remote_addr)
    access = issue_access_token(Principal.of(account), str(session.id), amr=FRESH_SESSION_AMR)
    metrics.inc("sv_auth_tokens_issued_total", kind="access")
    return {
        "access_token": access.token,
        "token_type": "Bearer",
        "expires_in": access.expires_in,
        "refresh_token": refresh_token,
        "session_id": str(session.id),
    }


def for_current_session(account: Account, claims: dict[str, Any]) -> dict[str, Any]:
    """A new access token for the session the caller's token belongs to (its refresh token is unchanged)."""
    access = issue_access_token(Principal.of(account), str(claims["sid"]))
    metrics.inc("sv_auth_tokens_issued_total", kind="access")
    return {"access_token": access.token, "token_type": "Bearer", "expires_in": access.expires_in}


def refresh_body(access: IssuedAccessToken, refresh_token: str, session_id: uuid.UUID) -> str:
    """A refresh's TokenOut document, written directly: every value is base64url, digits, hex or a UUID, so there
    is nothing to escape (json.dumps would cost the hot path for nothing)."""
    return (
        f'{{"access_token":"{access.token}","token_type":"Bearer","expires_in":{access.expires_in},'
        f'"refresh_token":"{refresh_token}","session_id":"{session_id}"}}\n'
    )
