"""Issue, list, revoke and exchange API keys. Add to the session; never commit (the view commits).

A key is ``svk_<id hex>_<secret>``: the id finds the row, the secret is checked against
``HMAC-SHA256(server secret, "apikey:<id hex>:<secret>")`` with a constant-time compare. Neither the key nor the
secret is stored or logged. The exchange returns an RFC 9068 access token whose ``sid`` is the key's id, so revoking
the key denylists ``sv:revoked:{s:<id>}:sid`` and the gateway refuses the key's outstanding tokens at once.
"""

from __future__ import annotations

import hmac
import secrets
import uuid
from dataclasses import dataclass
from typing import Any

import jwt
from flask import current_app
from sqlalchemy import func, select, update
from storyverse_contracts.identity import ADMIN, PARENT
from storyverse_contracts.tiers import FAMILY_PLAN, PARTNER_BASIC, PARTNER_PREMIUM

from .. import metrics, revocation, secrets_box
from ..clock import now, now_ts
from ..extensions import db
from ..models import Account
from ..tokens import signing
from ..tokens.access import TOKEN_TYPE, IssuedAccessToken
from . import errors
from .models import ApiKey

PREFIX = "svk_"
SCOPES = ("stories:read", "stories:write", "stories:generate", "usage:read")
# Plan name -> who may choose it when issuing a key. A `family` key's token carries the owner's family tier (basic,
# premium); a partner key's token carries the plan name as its `tier`. Each tier's limits live in sv-quota's `plans`
# (kong.yml). Partner plans are an administrator's decision: issued by an admin, or granted with grant_plan().
DEFAULT_PLANS = {FAMILY_PLAN: (PARENT, ADMIN), PARTNER_BASIC: (ADMIN,), PARTNER_PREMIUM: (ADMIN,)}
OWNER_ROLES = (PARENT, ADMIN)
MAX_LIVE_KEYS = 10
SECRET_BYTES = 32


@dataclass(frozen=True)
class Issued:
    key: ApiKey
    plaintext: str


def plans() -> dict[str, tuple[str, ...]]:
    return current_app.config.get("API_KEY_PLANS") or DEFAULT_PLANS


def _mac(key_id: uuid.UUID, secret: str) -> str:
    return secrets_box.token_mac(f"apikey:{key_id.hex}:{secret}")


def issue(owner: Account, name: str, scopes: list[str], plan: str) -> Issued:
    if owner.role not in OWNER_ROLES:
        raise errors.key_owner_only()
    if owner.role not in plans().get(plan, ()):
        raise errors.plan_not_allowed(plan)
    live = db.session.scalar(
        select(func.count()).select_from(ApiKey).where(ApiKey.owner_id == owner.id, ApiKey.revoked_at.is_(None))
    )
    if (live or 0) >= MAX_LIVE_KEYS:
        raise errors.api_key_limit(MAX_LIVE_KEYS)
    key_id, secret = uuid.uuid4(), secrets.token_urlsafe(SECRET_BYTES)
    key = ApiKey(
        id=key_id,
        owner_id=owner.id,
        name=name,
        secret_hash=_mac(key_id, secret),
        scopes=[s for s in SCOPES if s in set(scopes)],
        plan=plan,
        created_at=now(),
    )
    db.session.add(key)
    return Issued(key, f"{PREFIX}{key_id.hex}_{secret}")


def grant_plan(key_id: uuid.UUID, plan: str) -> ApiKey | None:
    """An administrator sets a live key's plan (any known plan); None when there is no such live key. Tokens already
    exchanged keep their `tier` until they expire; the next exchange carries the new plan."""
    if plan not in plans():
        raise errors.unknown_plan(plan)
    key = db.session.scalar(select(ApiKey).where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None)))
    if key is not None:
        key.plan = plan
    return key


def token_tier(key: ApiKey, owner: Account) -> str:
    """The `tier` a key's token is metered by: the owner's family tier for a `family` key, else the key's plan."""
    return owner.family.tier if key.plan == FAMILY_PLAN else key.plan


def list_keys(owner_id: uuid.UUID) -> list[ApiKey]:
    stmt = select(ApiKey).where(ApiKey.owner_id == owner_id).order_by(ApiKey.created_at.desc(), ApiKey.id)
    return list(db.session.scalars(stmt))


def revoke(owner_id: uuid.UUID, key_id: uuid.UUID) -> bool:
    """Revoke a live key of ``owner_id`` and its outstanding tokens; False when there is none."""
    revoked = db.session.execute(
        update(ApiKey)
        .where(ApiKey.id == key_id, ApiKey.owner_id == owner_id, ApiKey.revoked_at.is_(None))
        .values(revoked_at=now())
        .returning(ApiKey.id)
        .execution_options(synchronize_session=False)
    ).first()
    if revoked is None:
        return False
    # Every token exchanged from the key carries sid = key id: deny them all for their remaining lifetime.
    ttl = int(current_app.config["ACCESS_TOKEN_TTL"]) + 60
    revocation.confirm(revocation.deny_sid(str(key_id), ttl))
    return True


def parse(presented: str) -> tuple[uuid.UUID, str] | None:
    if not presented.startswith(PREFIX):
        return None
    id_hex, sep, secret = presented[len(PREFIX) :].partition("_")
    if not sep or len(id_hex) != 32 or not secret or len(secret) > 128:
        return None
    try:
        return uuid.UUID(hex=id_hex), secret
    except ValueError:
        return None


def authenticate(presented: str) -> tuple[ApiKey, Account]:
    """The live key and its owner for a presented ``svk_...`` string; 401 invalid_api_key otherwise."""
    parsed = parse(presented)
    row = None
    if parsed is not None:
        row = db.session.execute(
            select(ApiKey, Account)
            .join(Account, Account.id == ApiKey.owner_id)
            .where(ApiKey.id == parsed[0], ApiKey.revoked_at.is_(None))
        ).first()
    # Compare even when nothing matched, so a missing id and a wrong secret take the same time.
    expected = row[0].secret_hash if row is not None else "0" * 64
    actual = _mac(parsed[0], parsed[1]) if parsed is not None else "1" * 64
    if row is None or not hmac.compare_digest(expected, actual) or row[1].role not in OWNER_ROLES:
        metrics.inc("sv_auth_failed_attempts_total", reason="invalid_api_key")
        raise errors.invalid_api_key()
    return row[0], row[1]


def narrow(key: ApiKey, requested: str | None) -> list[str]:
    """The scopes of the exchanged token: the key's, or the requested subset of them."""
    if not requested:
        return list(key.scopes)
    wanted = requested.split()
    for scope in wanted:
        if scope not in key.scopes:
            raise errors.scope_not_granted(scope)
    return [s for s in key.scopes if s in wanted]


def exchange(key: ApiKey, owner: Account, scopes: list[str]) -> IssuedAccessToken:
    """A short-lived RFC 9068 token for the key: sub = owner, client_id = key id, plan = the key's plan, tier =
    token_tier() (the family's tier for a `family` key)."""
    cfg = current_app.config
    signing_key = signing.active_key()
    iat = int(now_ts())
    ttl = min(int(cfg.get("API_KEY_TOKEN_TTL", 300)), int(cfg["ACCESS_TOKEN_TTL"]))
    jti = str(uuid.uuid4())
    family = owner.family
    payload: dict[str, Any] = {
        "iss": cfg["ISSUER"],
        "aud": cfg["AUDIENCE"],
        "iat": iat,
        "nbf": iat,
        "exp": iat + ttl,
        "jti": jti,
        "client_id": str(key.id),
        "sub": str(owner.id),
        "role": owner.role,
        "family_id": str(family.id),
        "tier": token_tier(key, owner),
        "plan": key.plan,
        "tz": family.time_zone,
        "sid": str(key.id),
        "scope": " ".join(scopes),
    }
    token = jwt.encode(
        payload,
        signing_key.private_key,
        algorithm=signing_key.algorithm,
        headers={"kid": signing_key.kid, "typ": TOKEN_TYPE},
    )
    key.last_used_at = now()
    metrics.inc("sv_auth_tokens_issued_total", kind="api_key")
    return IssuedAccessToken(token, jti, ttl)


def to_dict(key: ApiKey) -> dict[str, Any]:
    return {
        "id": str(key.id),
        "name": key.name,
        "prefix": f"{PREFIX}{key.id.hex}_",
        "scopes": list(key.scopes),
        "plan": key.plan,
        "created_at": key.created_at,
        "last_used_at": key.last_used_at,
        "revoked_at": key.revoked_at,
    }
