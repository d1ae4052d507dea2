"""Bearer tokens: the auth service's access tokens (RFC 9068 JWTs), verified here against its JWKS.

The gateway's sv-jwt verified the token already (and checked its revocation); the service verifies the signature,
issuer, audience and lifetime again so a request that bypassed the gateway gets nothing (deny by default). The
algorithm list is pinned, `none`/HS* never pass, and only a key from the JWKS (never one named in the token) is used.
"""

from __future__ import annotations

import logging
from functools import wraps
from typing import Any

import jwt
from flask import current_app, g, request
from storyverse_contracts.identity import ROLES

from .errors import APIError

log = logging.getLogger(__name__)

REQUIRED_CLAIMS = ["exp", "iat", "sub", "iss", "aud"]
_TYP = {"at+jwt", "application/at+jwt"}


class KeySource:
    """Signing keys by `kid`: a static JWKS (config ``JWKS``, tests) or the auth service's URL (cached, refetched on
    an unknown kid by PyJWKClient)."""

    def __init__(self, jwks: dict[str, Any] | None, url: str) -> None:
        self._static = jwt.PyJWKSet.from_dict(jwks) if jwks else None
        self._client = None if jwks else jwt.PyJWKClient(url, cache_keys=True, lifespan=300, timeout=3)

    def key_for(self, token: str) -> jwt.PyJWK:
        if self._static is not None:
            kid = jwt.get_unverified_header(token).get("kid")
            for key in self._static.keys:
                if key.key_id == kid:
                    return key
            raise jwt.InvalidTokenError("unknown kid")
        try:
            return self._client.get_signing_key_from_jwt(token)
        except jwt.PyJWKClientConnectionError as exc:
            log.warning("JWKS unreachable")
            raise APIError.unavailable("Token keys are unavailable; try again shortly.") from exc
        except jwt.PyJWKClientError as exc:
            raise jwt.InvalidTokenError("unknown kid") from exc


def _keys() -> KeySource:
    source = current_app.extensions.get("sv_keys")
    if source is None:
        source = KeySource(current_app.config.get("JWKS"), current_app.config["JWKS_URL"])
        current_app.extensions["sv_keys"] = source
    return source


def verify(token: str) -> dict[str, Any]:
    """The token's claims, or APIError 401."""
    cfg = current_app.config
    try:
        header = jwt.get_unverified_header(token)
        if str(header.get("typ", "")).lower() not in _TYP:
            raise jwt.InvalidTokenError("typ")
        if header.get("alg") not in cfg["JWT_ALGORITHMS"]:
            raise jwt.InvalidAlgorithmError("alg")
        key = _keys().key_for(token)
        return jwt.decode(
            token,
            key.key,
            algorithms=[header["alg"]],
            audience=cfg["AUDIENCE"],
            issuer=cfg["ISSUER"],
            leeway=30,
            options={"require": REQUIRED_CLAIMS},
        )
    except jwt.ExpiredSignatureError as exc:
        raise APIError.unauthenticated("The access token has expired.") from exc
    except jwt.InvalidTokenError as exc:
        raise APIError.unauthenticated() from exc


def bearer_claims() -> dict[str, Any]:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise APIError.unauthenticated()
    return verify(token.strip())


def requires(*roles: str):
    """Verify the bearer token and require one of ``roles`` (claims in ``g.claims``)."""
    unknown = set(roles) - set(ROLES)
    if unknown:  # a typo would refuse everyone: fail at import, not at the first request
        raise ValueError(f"unknown roles {sorted(unknown)}; roles are {ROLES}")

    def decorator(view):
        @wraps(view)
        def wrapper(*args, **kwargs):
            claims = bearer_claims()
            if claims.get("role") not in roles:
                raise APIError.forbidden("forbidden", "This endpoint is not open to your role.")
            g.claims = claims
            return view(*args, **kwargs)

        return wrapper

    return decorator
