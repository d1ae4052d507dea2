"""Page sessions: a parent signed in on the server-rendered pages. Redis only; the cookie holds a random token and
Redis a hash of it (``sv:auth:v1:page:<sha256>``), so a copy of Redis cannot be replayed as a cookie.

The value names the account and a MAC of its password hash: a password reset or change ends every page session
(the stored stamp no longer matches). Idle lifetime ``PAGE_SESSION_TTL`` (30 minutes), renewed on each use.
"""

from __future__ import annotations

import secrets
import uuid

from flask import current_app

from .. import secrets_box
from ..extensions import db, redis_store
from ..models import Account

TTL_SECONDS = 1800
_KEY = "sv:auth:v1:page:"


def _key(token: str) -> str:
    return _KEY + secrets_box.sha256_hex(token)


def _ttl() -> int:
    return int(current_app.config.get("PAGE_SESSION_TTL", TTL_SECONDS))


def _stamp(account: Account) -> str:
    """Changes with every new password (a new hash, a new salt), whatever the clock's resolution."""
    return secrets_box.token_mac(f"page-session-password:{account.password_hash}")[:32]


def create(account: Account) -> str:
    token = secrets.token_urlsafe(32)
    redis_store.client.set(_key(token), f"{account.id}:{_stamp(account)}", ex=_ttl())
    return token


def load(token: str | None) -> Account | None:
    """The signed-in parent, or None (no cookie, unknown or expired token, password changed, no longer a parent)."""
    if not token or len(token) > 100:
        return None
    raw = redis_store.client.get(_key(token))
    if raw is None:
        return None
    account_id, _, stamp = (raw.decode() if isinstance(raw, bytes) else raw).partition(":")
    account = db.session.get(Account, uuid.UUID(account_id))
    if account is None or account.role != "parent" or _stamp(account) != stamp:
        destroy(token)
        return None
    redis_store.client.expire(_key(token), _ttl())
    return account


def destroy(token: str | None) -> None:
    if token:
        redis_store.client.delete(_key(token))


def csrf_token(token: str) -> str:
    return secrets_box.token_mac(f"page-csrf:{token}")


def login_csrf_token(cookie: str) -> str:
    return secrets_box.token_mac(f"page-login-csrf:{cookie}")
