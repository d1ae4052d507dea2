"""Sessions and refresh-token rotation.

A refresh token is ``svrt_<session id hex>.<generation>.<mac>`` with ``mac = HMAC(secret, "rt:<sid>:<gen>")``:
opaque to clients, verifiable without a database read, and stored only as its SHA-256. Rotation is one conditional
UPDATE on (id, generation, hash); the winner of a race moves the generation on, losers either fall inside the grace
window (the immediately previous token, ≤ 30 s) and receive the *same* successor, or are a reuse and revoke the session.
"""

from __future__ import annotations

import hmac
import uuid
from dataclasses import dataclass
from datetime import timedelta

from flask import current_app
from sqlalchemy import bindparam, select, update

from .. import keys, metrics, secrets_box
from ..clock import now, now_ts
from ..errors import APIError
from ..extensions import db, redis_store
from ..models import Account, Family, Session
from ..tokens import PRINCIPAL_COLUMNS, Principal

PREFIX = "svrt_"


def refresh_token_for(session_id: uuid.UUID, generation: int) -> str:
    mac = secrets_box.token_mac(f"rt:{session_id.hex}:{generation}")
    return f"{PREFIX}{session_id.hex}.{generation}.{mac}"


def parse_refresh_token(token: str) -> tuple[uuid.UUID, int] | None:
    if not token.startswith(PREFIX) or token.count(".") != 2:
        return None
    sid_hex, gen_text, mac = token[len(PREFIX) :].split(".")
    if len(sid_hex) != 32 or not gen_text.isdigit() or len(gen_text) > 9:
        return None
    try:
        sid = uuid.UUID(hex=sid_hex)
    except ValueError:
        return None
    expected = secrets_box.token_mac(f"rt:{sid.hex}:{int(gen_text)}")
    if not hmac.compare_digest(expected, mac):
        return None
    return sid, int(gen_text)


def create_session(account: Account, user_agent: str | None, ip: str | None) -> tuple[Session, str]:
    ts = now()
    sid = uuid.uuid4()
    token = refresh_token_for(sid, 0)
    session = Session(
        id=sid,
        account_id=account.id,
        generation=0,
        refresh_token_hash=secrets_box.sha256_hex(token),
        created_at=ts,
        last_used_at=ts,
        expires_at=ts + timedelta(seconds=current_app.config["SESSION_ABSOLUTE_TTL"]),
        user_agent=(user_agent or "")[:256] or None,
        ip=ip,
    )
    db.session.add(session)
    metrics.inc("sv_auth_tokens_issued_total", kind="refresh")
    return session, token


@dataclass(frozen=True)
class Rotation:
    session_id: uuid.UUID | None
    principal: Principal | None
    refresh_token: str | None
    error: APIError | None = None


def _failed(error: APIError) -> Rotation:
    return Rotation(None, None, None, error)


def _owner_join() -> tuple:
    return (Session.account_id == Account.id, Account.family_id == Family.id)


def _live(ts):
    idle = timedelta(seconds=current_app.config["SESSION_IDLE_TTL"])
    return (Session.revoked_at.is_(None), Session.expires_at > ts, Session.last_used_at > ts - idle)


# The hot path's statements, built once with bind parameters over the tables (Core: no ORM bulk-update machinery),
# so SQLAlchemy reuses their compiled form; building them per request cost ~0.5 ms of CPU. `now` is the request
# time and `idle_since` = now - SESSION_IDLE_TTL.
_S, _A, _F = Session.__table__.c, Account.__table__.c, Family.__table__.c
_PRINCIPAL = tuple(attr.property.columns[0] for attr in PRINCIPAL_COLUMNS)
_LIVE = (_S.revoked_at.is_(None), _S.expires_at > bindparam("now"), _S.last_used_at > bindparam("idle_since"))
_OWNER = (_S.account_id == _A.id, _A.family_id == _F.id)
_ROTATE = (
    update(Session.__table__)
    .where(
        _S.id == bindparam("sid"),
        _S.generation == bindparam("gen"),
        _S.refresh_token_hash == bindparam("presented_hash"),
        *_LIVE,
        *_OWNER,
    )
    .values(
        generation=bindparam("next_gen", type_=_S.generation.type),
        refresh_token_hash=bindparam("successor_hash", type_=_S.refresh_token_hash.type),
        rotated_at=bindparam("now"),
        last_used_at=bindparam("now"),
    )
    .returning(*_PRINCIPAL)
)
_COMMITTED = select(_S.generation, _S.rotated_at, *_PRINCIPAL).where(_S.id == bindparam("sid"), *_LIVE, *_OWNER)


def rotate(token: str) -> Rotation:
    """Rotate ``token``. The caller commits, then raises ``error`` if set (a reuse revocation must be committed)."""
    parsed = parse_refresh_token(token)
    if parsed is None:
        return _failed(APIError.invalid_refresh_token())
    sid, gen = parsed
    ts = now()
    successor = refresh_token_for(sid, gen + 1)
    live = {"sid": sid, "now": ts, "idle_since": ts - timedelta(seconds=current_app.config["SESSION_IDLE_TTL"])}
    # One round trip: the conditional UPDATE also returns the token's subject (UPDATE … FROM accounts, families).
    won = db.session.execute(
        _ROTATE,
        {
            **live,
            "gen": gen,
            "presented_hash": secrets_box.sha256_hex(token),
            "next_gen": gen + 1,
            "successor_hash": secrets_box.sha256_hex(successor),
        },
    ).first()
    if won is not None:
        metrics.inc("sv_auth_tokens_issued_total", kind="refresh")
        return Rotation(sid, Principal(*won), successor)
    # Lost the race or a replay: read the committed row (never read-check-write: the UPDATE above decided).
    row = db.session.execute(_COMMITTED, live).first()
    if row is None:
        return _failed(APIError.invalid_refresh_token())
    grace = timedelta(seconds=current_app.config["REFRESH_GRACE_SECONDS"])
    generation, rotated_at, *principal = row
    if generation == gen + 1 and rotated_at is not None and rotated_at >= ts - grace:
        return Rotation(sid, Principal(*principal), successor)
    revoke_session(sid, "refresh_reuse")
    metrics.inc("sv_auth_refresh_reuse_total")
    metrics.inc("sv_auth_failed_attempts_total", reason="refresh_reuse")
    return _failed(APIError.refresh_token_reused())


def _denylist_sid(sid: uuid.UUID) -> None:
    ttl = int(current_app.config["ACCESS_TOKEN_TTL"]) + 60
    redis_store.client.set(keys.revoked_sid(str(sid)), "1", ex=ttl)


def denylist_jti(jti: str, exp: float, sid: str | None = None) -> None:
    """Deny one access token until it expires (the gateway reads ``keys.revoked_jti``, tagged by the token's sid)."""
    remaining = int(exp - now_ts()) + 1
    if remaining > 0:
        redis_store.client.set(keys.revoked_jti(jti, sid), "1", ex=remaining)


def revoke_session(sid: uuid.UUID, reason: str, account_id: uuid.UUID | None = None) -> bool:
    """Revoke one live session (optionally only if it belongs to ``account_id``); True if one was revoked."""
    stmt = update(Session).where(Session.id == sid, Session.revoked_at.is_(None))
    if account_id is not None:
        stmt = stmt.where(Session.account_id == account_id)
    row = db.session.execute(
        stmt.values(revoked_at=now(), revoke_reason=reason)
        .returning(Session.id)
        .execution_options(synchronize_session=False)
    ).first()
    _denylist_sid(sid)
    return row is not None


def revoke_all(account_id: uuid.UUID, reason: str, keep: uuid.UUID | None = None) -> int:
    stmt = update(Session).where(Session.account_id == account_id, Session.revoked_at.is_(None))
    if keep is not None:
        stmt = stmt.where(Session.id != keep)
    ids = db.session.scalars(
        stmt.values(revoked_at=now(), revoke_reason=reason)
        .returning(Session.id)
        .execution_options(synchronize_session=False)
    ).all()
    for sid in ids:
        _denylist_sid(sid)
    return len(ids)


def live_sessions(account_id: uuid.UUID) -> list[Session]:
    return list(
        db.session.scalars(
            select(Session).where(Session.account_id == account_id, *_live(now())).order_by(Session.created_at.desc())
        )
    )


def is_revoked(claims: dict) -> bool:
    pipe = redis_store.client.pipeline(transaction=False)
    pipe.exists(keys.revoked_jti(str(claims["jti"]), claims.get("sid")))
    pipe.exists(keys.revoked_sid(str(claims.get("sid", ""))))
    return any(pipe.execute())
