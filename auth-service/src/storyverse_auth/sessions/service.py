"""Sessions and refresh-token rotation, on the Redis session store (store.py; issue 17).

A refresh token is ``svrt_<session id hex>.<generation>.<mac>`` with ``mac = HMAC(secret, "rt:<sid>:<gen>")``:
opaque to clients and verifiable without a read. Rotation is one atomic script on the session's hash: the winner of
a race moves the generation on; losers either fall inside the grace window (the immediately previous token,
≤ 30 s) and receive the *same* successor (it is derived, not stored), or are a reuse and end the session.

PostgreSQL keeps the accounts (the token's claims are read from it on a cache miss, one SELECT, no write; cached in
the session's hash otherwise: claims_cache.py) and the audit of session events (audit.py). Sessions created
before the move are moved on their first refresh (``_move_from_postgres``) or in bulk by
``flask sessions move-to-redis``.
"""

from __future__ import annotations

import hmac
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from flask import current_app
from sqlalchemy import bindparam, select, update

from .. import audit, input_guard, metrics, revocation, secrets_box
from .. import redis_keys as keys
from ..clock import now, now_ts
from ..errors import APIError
from ..extensions import db, redis_store
from ..models import Account, Family, Session
from ..tokens.access import PRINCIPAL_COLUMNS, Principal, children_column
from . import claims_cache
from . import store as session_store
from .store import GONE, GRACE, REUSED, ROTATED, StoredSession

PREFIX = "svrt_"
MOVED = "moved_to_redis"


def refresh_token_for(session_id: uuid.UUID, generation: int) -> str:
    mac = secrets_box.token_mac(f"rt:{session_id.hex}:{generation}")
    return f"{PREFIX}{session_id.hex}.{generation}.{mac}"


def parse_refresh_token(token: str) -> tuple[uuid.UUID, int] | None:
    """(session id, generation) of a token exactly as ``refresh_token_for`` writes it, else None. Only that
    spelling: ``int``/``UUID`` also read ``01``, ``ABC…`` and non-ASCII digits (``١``), which would make other
    strings valid tokens; and ``compare_digest`` raises on a non-ASCII string."""
    if not token.isascii() or not token.startswith(PREFIX) or token.count(".") != 2:
        return None
    sid_hex, gen_text, mac = token[len(PREFIX) :].split(".")
    if len(sid_hex) != 32 or not gen_text.isdigit() or len(gen_text) > 9 or str(int(gen_text)) != gen_text:
        return None
    try:
        sid = uuid.UUID(hex=sid_hex)
    except ValueError:
        return None
    if sid.hex != sid_hex:
        return None
    expected = secrets_box.token_mac(f"rt:{sid.hex}:{int(gen_text)}")
    if not hmac.compare_digest(expected, mac):
        return None
    return sid, int(gen_text)


def _ttls() -> tuple[int, int]:
    cfg = current_app.config
    return int(cfg["SESSION_IDLE_TTL"]), int(cfg["SESSION_ABSOLUTE_TTL"])


def create_session(
    account_id: uuid.UUID, user_agent: str | None, ip: str | None, clear: Sequence[str] = ()
) -> tuple[StoredSession, str]:
    """A new session of ``account_id`` and its first refresh token; ``clear`` (a sign-in's throttle counters) is
    deleted in the same round trip (store.py ``create``). The login is audited after the request (audit.py)."""
    ts = now()
    idle, absolute = _ttls()
    session = StoredSession(
        id=uuid.uuid4(),
        account_id=account_id,
        generation=0,
        created_at=ts,
        last_used_at=ts,
        expires_at=ts + timedelta(seconds=absolute),
        rotated_at=None,
        user_agent=input_guard.storable_text(user_agent, 256),
        ip=ip,
    )
    session_store.create(session, ttl=min(idle, absolute), clear=clear)
    audit.record("login", session.id, account_id)
    metrics.inc("sv_auth_tokens_issued_total", kind="refresh")
    return session, refresh_token_for(session.id, 0)


@dataclass(frozen=True)
class Rotation:
    session_id: uuid.UUID | None
    principal: Principal | None
    refresh_token: str | None
    error: APIError | None = None
    amr: list[str] | None = None  # RFC 8176 methods of a parent's or admin's session (None for a child)


def _failed(error: APIError) -> Rotation:
    return Rotation(None, None, None, error)


# The token's subject and (for a parent) the ``children`` claim in one statement, run outside a transaction: read
# only when the session's hash holds no (fresh) cached claims (claims_cache.py).
_PRINCIPAL = select(*PRINCIPAL_COLUMNS, children_column()).where(
    Account.id == bindparam("account_id"), Account.family_id == Family.id
)


def _principal(account_id: uuid.UUID) -> Principal | None:
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        row = conn.execute(_PRINCIPAL, {"account_id": account_id}).first()
    if row is None:
        return None
    *fields, children = row
    return Principal(*fields, children=[str(c) for c in children] if fields[1] == "parent" else None)


def _subject(sid: uuid.UUID, rotated: session_store.Rotated) -> tuple[Principal | None, int | None]:
    """The token's subject and the session's second-factor time: from the hash, else PostgreSQL (then cached)."""
    assert rotated.account_id is not None
    principal = claims_cache.loads(rotated.claims, rotated.account_id)
    if principal is not None:
        return principal, rotated.mfa_at
    principal = _principal(rotated.account_id)
    if principal is None:
        return None, None
    from ..mfa.service import verified_at  # (late: mfa imports services)

    mfa_at = rotated.mfa_at if rotated.mfa_at is not None else verified_at(str(sid))
    session_store.fill_claims(sid, rotated.cv, claims_cache.dumps(principal), mfa_at)
    return principal, mfa_at


def rotate(token: str) -> Rotation:
    """Rotate ``token``; on failure ``error`` is set (a reuse has already ended the session).

    A refresh of a session whose claims are cached is one Redis round trip (the rotation script) and no
    PostgreSQL."""
    parsed = parse_refresh_token(token)
    if parsed is None:
        return _failed(APIError.invalid_refresh_token())
    sid, gen = parsed
    cfg = current_app.config
    idle, absolute = _ttls()
    args = (sid, gen, now_ts(), idle, int(cfg["REFRESH_GRACE_SECONDS"]), min(idle, absolute))
    rotated = session_store.rotate(*args)
    if rotated.code == GONE and _move_from_postgres(sid):
        rotated = session_store.rotate(*args)
    if rotated.code == REUSED:
        _ended(sid, rotated.account_id, "refresh_reuse")
        metrics.inc("sv_auth_refresh_reuse_total")
        metrics.inc("sv_auth_failed_attempts_total", reason="refresh_reuse")
        return _failed(APIError.refresh_token_reused())
    if rotated.code not in (ROTATED, GRACE) or rotated.account_id is None:
        return _failed(APIError.invalid_refresh_token())
    principal, mfa_at = _subject(sid, rotated)
    if principal is None:
        return _failed(APIError.invalid_refresh_token())
    if rotated.code == ROTATED:
        metrics.inc("sv_auth_tokens_issued_total", kind="refresh")
    amr = (["pwd", "otp", "mfa"] if mfa_at is not None else ["pwd"]) if principal.role in ("parent", "admin") else None
    return Rotation(sid, principal, refresh_token_for(sid, gen + 1), amr=amr)


def _move_from_postgres(sid: uuid.UUID) -> bool:
    """A live session still in PostgreSQL (created before the move) now lives in Redis; True if Redis holds it."""
    return _move(Session.id == sid) > 0 or bool(redis_store.client.exists(keys.session(str(sid))))


def _move(*where) -> int:
    """Move the live PostgreSQL sessions matching ``where`` to Redis; how many this call moved.

    The rows are marked moved and committed first, on a connection of their own, and only then created in Redis
    (never overwriting): a crash in between loses those sessions (their users sign in again) but can never bring
    back a session that was revoked in Redis after its move."""
    ts = now()
    idle, _ = _ttls()
    live = (Session.revoked_at.is_(None), Session.expires_at > ts, Session.last_used_at > ts - timedelta(seconds=idle))
    table = Session.__table__
    with db.engine.begin() as conn:
        rows = conn.execute(
            update(table).where(*where, *live).values(revoked_at=ts, revoke_reason=MOVED).returning(*table.c)
        ).all()
    for row in rows:
        stored = StoredSession(
            row.id,
            row.account_id,
            row.generation,
            row.created_at,
            row.last_used_at,
            row.expires_at,
            row.rotated_at,
            row.user_agent,
            row.ip,
        )
        session_store.create(stored, ttl=min(idle, int((row.expires_at - ts).total_seconds())))
    return len(rows)


def move_all_to_redis(batch: int = 500) -> int:
    """``flask sessions move-to-redis``: every live PostgreSQL session, in batches; how many moved."""
    moved = 0
    idle, _ = _ttls()
    while True:
        ts = now()
        live = (
            Session.revoked_at.is_(None),
            Session.expires_at > ts,
            Session.last_used_at > ts - timedelta(seconds=idle),
        )
        count = _move(Session.id.in_(select(Session.id).where(*live).limit(batch).scalar_subquery()))
        moved += count
        if count == 0:
            return moved


def _denylist_sid(sid: uuid.UUID) -> list[str]:
    """Deny the session's access tokens (both key formats, revocation.py); the keys written."""
    return revocation.deny_sid(str(sid), int(current_app.config["ACCESS_TOKEN_TTL"]) + 60)


def _ended(sid: uuid.UUID, account_id: uuid.UUID | None, reason: str) -> None:
    written = [keys.session(str(sid)), *_denylist_sid(sid)]
    if account_id is not None:
        redis_store.client.zrem(keys.account_sessions(str(account_id)), str(sid))
    revocation.confirm(written)
    audit.record("revoke", sid, account_id, reason)


def denylist_jti(jti: str, exp: float, sid: str | None = None) -> None:
    """Deny one access token until it expires (the gateway reads ``revoked_jti_key``, tagged by the token's sid),
    confirmed on a replica (revocation.confirm)."""
    remaining = int(exp - now_ts()) + 1
    if remaining > 0:
        revocation.confirm(revocation.deny_jti(jti, sid, remaining))


def revoke_session(sid: uuid.UUID, reason: str, account_id: uuid.UUID | None = None) -> bool:
    """Revoke one live session (optionally only if it belongs to ``account_id``); True if one was revoked.

    Only a session this call revoked is denylisted: the ``sid`` namespace is shared with OAuth grants and API keys,
    and an id the caller does not own must not touch anyone's tokens (issue 15). Answered once a replica has the
    deletion and the denylist keys (revocation.confirm)."""
    owner = session_store.revoke(sid, account_id)
    if owner is None and _move_from_postgres(sid):
        owner = session_store.revoke(sid, account_id)
    if owner is None:
        return False
    revocation.confirm([keys.session(str(sid)), *_denylist_sid(sid)])
    audit.record("revoke", sid, owner, reason)
    return True


def revoke_all(account_id: uuid.UUID, reason: str, keep: uuid.UUID | None = None) -> int:
    _move_all_from_postgres(account_id)
    count, written = 0, []
    for sid in session_store.session_ids(account_id):
        if sid != keep and session_store.revoke(sid, account_id) is not None:
            written += [keys.session(str(sid)), *_denylist_sid(sid)]
            audit.record("revoke", sid, account_id, reason)
            count += 1
    revocation.confirm(written)
    return count


def _move_all_from_postgres(account_id: uuid.UUID) -> None:
    """Before acting on all of an account's sessions, move any it still has in PostgreSQL (so none is missed)."""
    _move(Session.account_id == account_id)


def live_sessions(account_id: uuid.UUID) -> list[StoredSession]:
    _move_all_from_postgres(account_id)
    idle, _ = _ttls()
    return session_store.live(account_id, now_ts(), idle)


def is_revoked(claims: dict) -> bool:
    return revocation.is_revoked(str(claims["jti"]), claims.get("sid"))
