"""RFC 9068 access tokens: PyJWT with a pinned algorithm allowlist, typed keys and narrow exceptions."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import jwt
from flask import current_app
from sqlalchemy import func, select
from sqlalchemy.orm import aliased

from ..children import controls
from ..clock import now, now_ts
from ..errors import APIError
from ..extensions import db
from ..models import Account, Family
from . import signing

TOKEN_TYPE = "at+jwt"  # noqa: S105 (a media type, not a secret)
FRESH_SESSION_AMR = ["pwd"]  # a session created by this request has had no second-factor check yet (no Redis read)
LEEWAY_SECONDS = 30
REQUIRED_CLAIMS = ["iss", "aud", "sub", "exp", "iat", "nbf", "jti"]
MAX_CHILDREN_CLAIM = 64  # sv-rbac ignores a longer `children` list


@dataclass(frozen=True)
class IssuedAccessToken:
    token: str
    jti: str
    expires_in: int


@dataclass(frozen=True)
class Principal:
    """What an access token says about its subject; built from ORM objects or from one RETURNING row."""

    account_id: uuid.UUID
    role: str
    family_id: uuid.UUID
    tier: str
    time_zone: str
    age_band: str | None = None
    content_rating: str | None = None
    birth_year: int | None = None
    max_content_rating: str | None = None
    daily_story_limit: int | None = None
    allowed_hours: str | None = None
    features: list[str] | None = None
    # A parent's children (the ``children`` claim) when already read with the rest; None = read when issuing.
    children: list[str] | None = None

    @classmethod
    def of(cls, account: Account) -> Principal:
        family = account.family
        return cls(
            account.id,
            account.role,
            family.id,
            family.tier,
            family.time_zone,
            account.age_band,
            account.content_rating,
            account.birth_year,
            account.max_content_rating,
            account.daily_story_limit,
            account.allowed_hours,
            account.features,
        )

    def child_controls(self) -> controls.ChildClaims:
        """The child's effective controls now (age band from the birth year this year; age and tier caps)."""
        tier_limit = controls.tier_limit(self.tier)
        stored = controls.Controls(
            max_content_rating=self.max_content_rating or controls.CONTENT_RATINGS[0],
            daily_story_limit=tier_limit if self.daily_story_limit is None else self.daily_story_limit,
            allowed_hours=self.allowed_hours or controls.DEFAULT_ALLOWED_HOURS,
            features=tuple(self.features if self.features is not None else controls.DEFAULT_FEATURES),
        )
        if self.birth_year is not None:
            return controls.child_claims(self.birth_year, now().year, stored, self.tier)
        # A child without a birth year (created before profiles existed): its stored band, or the youngest.
        band = self.age_band if self.age_band in controls.AGE_BANDS else controls.AGE_BANDS[0]
        rating = controls.strictest(controls.BAND_RATING[band], stored.max_content_rating)
        if self.content_rating in controls.CONTENT_RATINGS:
            rating = controls.strictest(rating, self.content_rating)
        return controls.ChildClaims(
            band,
            rating,
            stored.max_content_rating,
            stored.allowed_hours,
            controls.ordered_features(stored.features),
            min(stored.daily_story_limit, tier_limit),
        )


# Columns in Principal's field order, for `RETURNING` / `SELECT` over accounts JOIN families.
PRINCIPAL_COLUMNS = (
    Account.id,
    Account.role,
    Family.id,
    Family.tier,
    Family.time_zone,
    Account.age_band,
    Account.content_rating,
    Account.birth_year,
    Account.max_content_rating,
    Account.daily_story_limit,
    Account.allowed_hours,
    Account.features,
)


def children_column():
    """The family's child ids as one array column (``family_children`` in SQL), to read with PRINCIPAL_COLUMNS."""
    child = aliased(Account)
    ids = (
        select(child.id)
        .where(child.family_id == Family.id, child.role == "child")
        .order_by(child.created_at, child.id)
        .limit(MAX_CHILDREN_CLAIM)
        .correlate(Family)
        .scalar_subquery()
    )
    return func.array(ids)


def family_children(family_id: uuid.UUID) -> list[str]:
    """The family's child account ids, oldest profile first (at most MAX_CHILDREN_CLAIM)."""
    rows = db.session.scalars(
        select(Account.id)
        .where(Account.family_id == family_id, Account.role == "child")
        .order_by(Account.created_at, Account.id)
        .limit(MAX_CHILDREN_CLAIM)
    )
    return [str(child_id) for child_id in rows]


def access_claims(principal: Principal, session_id: str) -> dict[str, Any]:
    claims: dict[str, Any] = {
        "sub": str(principal.account_id),
        "role": principal.role,
        "family_id": str(principal.family_id),
        "tier": principal.tier,
        "tz": principal.time_zone,
        "sid": session_id,
    }
    if principal.role == "parent":
        known = principal.children
        claims["children"] = family_children(principal.family_id) if known is None else known
    elif principal.role == "child":
        child = principal.child_controls()
        claims.update(
            age_band=child.age_band,
            content_rating=child.content_rating,
            max_content_rating=child.max_content_rating,
            allowed_hours=child.allowed_hours,
            features=child.features,
            daily_story_limit=child.daily_story_limit,
        )
    return claims


def issue_access_token(principal: Principal, session_id: str, amr: list[str] | None = None) -> IssuedAccessToken:
    """Sign an access token for ``principal``'s session; ``amr`` when the caller already knows it (a refresh reads
    it with the rotation), else read for a parent or admin."""
    cfg = current_app.config
    key = signing.active_key()
    iat = int(now_ts())
    ttl = int(cfg["ACCESS_TOKEN_TTL"])
    jti = str(uuid.uuid4())
    payload = {
        "iss": cfg["ISSUER"],
        "aud": cfg["AUDIENCE"],
        "iat": iat,
        "nbf": iat,
        "exp": iat + ttl,
        "jti": jti,
        "client_id": "storyverse",
        **access_claims(principal, session_id),
    }
    if principal.role in ("parent", "admin"):
        from ..mfa.service import amr as read_amr  # (late: mfa imports services, which import this module)

        # RFC 8176: "pwd", plus "otp"/"mfa" once the session passed a step-up
        payload["amr"] = amr if amr is not None else read_amr(session_id)
    token = jwt.encode(payload, key.private_key, algorithm=key.algorithm, headers={"kid": key.kid, "typ": TOKEN_TYPE})
    return IssuedAccessToken(token, jti, ttl)


def decode_access_token(token: str) -> dict[str, Any]:
    """Verify signature, algorithm, kid, typ, iss, aud and times; raise APIError on any failure."""
    cfg = current_app.config
    try:
        header = jwt.get_unverified_header(token)
    except jwt.DecodeError as exc:
        raise APIError.unauthenticated("The access token is malformed.") from exc
    kid = header.get("kid")
    if not isinstance(kid, str) or header.get("typ") != TOKEN_TYPE or header.get("alg") not in signing.ALGORITHMS:
        raise APIError.unauthenticated("The access token header is not acceptable.")
    # Each key verifies only the algorithm it was created with (a key keeps its algorithm when JWT_ALGORITHM
    # changes, so tokens of a key created before the change stay valid until the key is retired).
    found = signing.public_key(kid)
    if found is None or found[0] != header["alg"]:
        raise APIError.unauthenticated("The access token was signed by an unknown key.")
    try:
        claims = jwt.decode(
            token,
            found[1],
            algorithms=[found[0]],
            audience=cfg["AUDIENCE"],
            issuer=cfg["ISSUER"],
            leeway=LEEWAY_SECONDS,
            # Times are checked below against the service clock (clock.py), which tests can move.
            options={
                "require": REQUIRED_CLAIMS,
                "strict_aud": True,
                "verify_exp": False,
                "verify_nbf": False,
                "verify_iat": False,
            },
        )
    except jwt.InvalidTokenError as exc:
        raise APIError.unauthenticated("The access token is invalid.") from exc
    _check_times(claims)
    return claims


def _check_times(claims: dict[str, Any]) -> None:
    exp, nbf, iat = claims["exp"], claims["nbf"], claims.get("iat", claims["nbf"])
    if not all(isinstance(value, int | float) for value in (exp, nbf, iat)):
        raise APIError.unauthenticated("The access token is invalid.")
    current = now_ts()
    if exp <= current - LEEWAY_SECONDS:
        raise APIError.token_expired()
    if max(nbf, iat) > current + LEEWAY_SECONDS:
        raise APIError.unauthenticated("The access token is not yet valid.")
