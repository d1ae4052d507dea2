"""RFC 9068 access tokens: PyJWT with a pinned algorithm allowlist, typed keys and narrow exceptions."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import jwt
from flask import current_app

from . import signing
from .clock import now_ts
from .errors import APIError
from .models import Account, Family

TOKEN_TYPE = "at+jwt"  # noqa: S105 (a media type, not a secret)
LEEWAY_SECONDS = 30
REQUIRED_CLAIMS = ["iss", "aud", "sub", "exp", "iat", "nbf", "jti"]


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

    @classmethod
    def of(cls, account: Account) -> Principal:
        family = account.family
        return cls(
            account.id, account.role, family.id, family.tier, family.time_zone, account.age_band, account.content_rating
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
)


def access_claims(principal: Principal, session_id: str) -> dict[str, Any]:
    claims: dict[str, Any] = {
        "sub": str(principal.account_id),
        "role": principal.role,
        "family_id": str(principal.family_id),
        "tier": principal.tier,
        "tz": principal.time_zone,
        "sid": session_id,
    }
    if principal.role == "child":
        claims["age_band"] = principal.age_band
        claims["content_rating"] = principal.content_rating
    return claims


def issue_access_token(principal: Principal, session_id: str) -> IssuedAccessToken:
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
    if not isinstance(kid, str) or header.get("typ") != TOKEN_TYPE or header.get("alg") != cfg["JWT_ALGORITHM"]:
        raise APIError.unauthenticated("The access token header is not acceptable.")
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
            options={"require": REQUIRED_CLAIMS, "strict_aud": True, "verify_exp": False, "verify_nbf": False},
        )
    except jwt.InvalidTokenError as exc:
        raise APIError.unauthenticated("The access token is invalid.") from exc
    _check_times(claims)
    return claims


def _check_times(claims: dict[str, Any]) -> None:
    exp, nbf = claims["exp"], claims["nbf"]
    if not isinstance(exp, int | float) or not isinstance(nbf, int | float):
        raise APIError.unauthenticated("The access token is invalid.")
    current = now_ts()
    if exp <= current - LEEWAY_SECONDS:
        raise APIError.token_expired()
    if nbf > current + LEEWAY_SECONDS:
        raise APIError.unauthenticated("The access token is not yet valid.")
