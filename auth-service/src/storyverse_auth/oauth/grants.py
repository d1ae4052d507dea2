"""Grants (one parent's authorization of one client) and their refresh tokens, with the Auth-core rotation rules.

A client refresh token is ``svort_<grant id hex>.<generation>.<mac>`` with ``mac = HMAC(secret, "ort:<id>:<gen>")``:
the same shape as a session's ``svrt_`` token under another prefix and MAC label, so neither endpoint accepts the
other's tokens. Rotation happens on every use as one conditional UPDATE on (id, client, generation, hash); the loser of
a race inside the grace window (the immediately previous token, ≤ 30 s) gets the *same* successor; any other reuse
revokes the whole grant, and with it (``sv:revoked:{s:<grant id>}:sid``) every access token issued under it.
"""

from __future__ import annotations

import hmac
import uuid
from dataclasses import dataclass
from datetime import timedelta

from flask import current_app
from sqlalchemy import select, update

from .. import metrics, revocation, secrets_box
from ..clock import now
from ..extensions import db
from .models import OAuthGrant

PREFIX = "svort_"


def refresh_token_for(grant_id: uuid.UUID, generation: int) -> str:
    mac = secrets_box.token_mac(f"ort:{grant_id.hex}:{generation}")
    return f"{PREFIX}{grant_id.hex}.{generation}.{mac}"


def parse_refresh_token(token: str) -> tuple[uuid.UUID, int] | None:
    if not token.isascii() or not token.startswith(PREFIX) or token.count(".") != 2 or len(token) > 200:
        return None
    gid_hex, gen_text, mac = token[len(PREFIX) :].split(".")
    if len(gid_hex) != 32 or not gen_text.isdigit() or len(gen_text) > 9 or str(int(gen_text)) != gen_text:
        return None  # only the spelling refresh_token_for writes (sessions/service.py parse_refresh_token)
    try:
        gid = uuid.UUID(hex=gid_hex)
    except ValueError:
        return None
    if gid.hex != gid_hex:
        return None
    if not hmac.compare_digest(secrets_box.token_mac(f"ort:{gid.hex}:{int(gen_text)}"), mac):
        return None
    return gid, int(gen_text)


def create(client_pk: uuid.UUID, account_id: uuid.UUID, scope: str) -> tuple[OAuthGrant, str]:
    ts = now()
    gid = uuid.uuid4()
    token = refresh_token_for(gid, 0)
    grant = OAuthGrant(
        id=gid,
        client_pk=client_pk,
        account_id=account_id,
        scope=scope,
        generation=0,
        refresh_token_hash=secrets_box.sha256_hex(token),
        created_at=ts,
        last_used_at=ts,
        expires_at=ts + timedelta(seconds=current_app.config["SESSION_ABSOLUTE_TTL"]),
    )
    db.session.add(grant)
    metrics.inc("sv_auth_tokens_issued_total", kind="oauth_refresh")
    return grant, token


def _live(ts):
    idle = timedelta(seconds=current_app.config["SESSION_IDLE_TTL"])
    return (OAuthGrant.revoked_at.is_(None), OAuthGrant.expires_at > ts, OAuthGrant.last_used_at > ts - idle)


@dataclass(frozen=True)
class Rotation:
    grant_id: uuid.UUID | None = None
    account_id: uuid.UUID | None = None
    scope: str = ""
    refresh_token: str | None = None
    reused: bool = False


def rotate(token: str, client_pk: uuid.UUID) -> Rotation:
    """Rotate ``token`` for ``client_pk``. An empty Rotation means invalid; ``reused`` means the grant was revoked
    (the caller must commit that)."""
    parsed = parse_refresh_token(token)
    if parsed is None:
        return Rotation()
    gid, gen = parsed
    ts = now()
    successor = refresh_token_for(gid, gen + 1)
    won = db.session.execute(
        update(OAuthGrant)
        .where(
            OAuthGrant.id == gid,
            OAuthGrant.client_pk == client_pk,
            OAuthGrant.generation == gen,
            OAuthGrant.refresh_token_hash == secrets_box.sha256_hex(token),
            *_live(ts),
        )
        .values(
            generation=gen + 1,
            refresh_token_hash=secrets_box.sha256_hex(successor),
            rotated_at=ts,
            last_used_at=ts,
        )
        .returning(OAuthGrant.account_id, OAuthGrant.scope)
        .execution_options(synchronize_session=False)
    ).first()
    if won is not None:
        metrics.inc("sv_auth_tokens_issued_total", kind="oauth_refresh")
        return Rotation(gid, won[0], won[1], successor)
    row = db.session.execute(
        select(OAuthGrant.generation, OAuthGrant.rotated_at, OAuthGrant.account_id, OAuthGrant.scope).where(
            OAuthGrant.id == gid, OAuthGrant.client_pk == client_pk, *_live(ts)
        )
    ).first()
    if row is None:
        return Rotation()  # unknown, expired, revoked, or another client's token: nothing to revoke
    generation, rotated_at, account_id, scope = row
    grace = timedelta(seconds=current_app.config["REFRESH_GRACE_SECONDS"])
    if generation == gen + 1 and rotated_at is not None and rotated_at >= ts - grace:
        return Rotation(gid, account_id, scope, successor)
    revoke(gid, "refresh_reuse")
    metrics.inc("sv_auth_refresh_reuse_total")
    metrics.inc("sv_auth_failed_attempts_total", reason="oauth_refresh_reuse")
    return Rotation(reused=True)


def denylist(grant_id: uuid.UUID) -> None:
    """Every access token with ``sid`` = this grant is refused by the gateway until it would have expired."""
    ttl = int(current_app.config["ACCESS_TOKEN_TTL"]) + 60
    revocation.confirm(revocation.deny_sid(str(grant_id), ttl))


def revoke(grant_id: uuid.UUID, reason: str) -> bool:
    row = db.session.execute(
        update(OAuthGrant)
        .where(OAuthGrant.id == grant_id, OAuthGrant.revoked_at.is_(None))
        .values(revoked_at=now(), revoke_reason=reason)
        .returning(OAuthGrant.id)
        .execution_options(synchronize_session=False)
    ).first()
    if row is None:
        return False  # unknown or already revoked (and denylisted then): nothing to do
    denylist(grant_id)
    return True


def _revoke_where(reason: str, *where) -> int:
    """Revoke the live grants matching ``where`` and denylist their access tokens; how many were revoked."""
    ids = db.session.scalars(
        update(OAuthGrant)
        .where(*where, OAuthGrant.revoked_at.is_(None))
        .values(revoked_at=now(), revoke_reason=reason)
        .returning(OAuthGrant.id)
        .execution_options(synchronize_session=False)
    ).all()
    for gid in ids:
        denylist(gid)
    return len(ids)


def revoke_client(client_pk: uuid.UUID, reason: str) -> int:
    return _revoke_where(reason, OAuthGrant.client_pk == client_pk)


def is_live(grant_id: uuid.UUID) -> bool:
    return db.session.scalar(select(OAuthGrant.id).where(OAuthGrant.id == grant_id, *_live(now()))) is not None


def revoke_account(account_id: uuid.UUID, reason: str, client_pk: uuid.UUID | None = None) -> int:
    """Revoke every live grant of the account (only those of ``client_pk`` when given): their refresh tokens stop
    working and every access token issued under them is denylisted for the gateway. How many were revoked."""
    where = [OAuthGrant.account_id == account_id]
    if client_pk is not None:
        where.append(OAuthGrant.client_pk == client_pk)
    return _revoke_where(reason, *where)


def live_for_account(account_id: uuid.UUID) -> list[OAuthGrant]:
    """The account's live grants (not revoked, not expired, used within the idle lifetime), oldest first."""
    stmt = (
        select(OAuthGrant)
        .where(OAuthGrant.account_id == account_id, *_live(now()))
        .order_by(OAuthGrant.created_at, OAuthGrant.id)
    )
    return list(db.session.scalars(stmt))
