"""Tokens issued through OAuth: RFC 9068 access tokens (the same as first-party ones, with the client's
``client_id`` and the granted ``scope``) and OIDC ID tokens (``typ: JWT``, ``aud`` = the client: never an access
token). Signed with PyJWT: access tokens by the key that signs every access token of the service (JWT_ALGORITHM),
ID tokens always by the active RS256 key (OIDC Core 1.0 §15.1; tokens/signing.py)."""

from __future__ import annotations

import uuid
from typing import Any

import jwt
from authlib.oidc.core.util import create_half_hash
from flask import current_app

from .. import metrics
from ..clock import now_ts
from ..models import Account
from ..tokens import signing
from ..tokens.access import TOKEN_TYPE, Principal, access_claims
from . import grants
from .models import OAuthClient

ID_TOKEN_TYPE = "JWT"  # noqa: S105  (a media type, not a secret)
ID_TOKEN_TTL = 600


def _sign(payload: dict[str, Any], typ: str, key: signing.ActiveKey) -> str:
    return jwt.encode(payload, key.private_key, algorithm=key.algorithm, headers={"kid": key.kid, "typ": typ})


def access_token(client: OAuthClient, scope: str, account: Account | None, grant_id: uuid.UUID | None) -> str:
    cfg = current_app.config
    iat = int(now_ts())
    payload: dict[str, Any] = {
        "iss": cfg["ISSUER"],
        "aud": cfg["AUDIENCE"],
        "iat": iat,
        "nbf": iat,
        "exp": iat + int(cfg["ACCESS_TOKEN_TTL"]),
        "jti": str(uuid.uuid4()),
        # RFC 9068 §2.2: a token without a resource owner (client credentials) has the client as its subject.
        "sub": client.client_id,
    }
    if account is not None and grant_id is not None:
        payload.update(access_claims(Principal.of(account), str(grant_id)))
    payload["client_id"] = client.client_id
    if scope:
        payload["scope"] = scope
    metrics.inc("sv_auth_tokens_issued_total", kind="oauth_access")
    return _sign(payload, TOKEN_TYPE, signing.active_key())


def token_response(access: str, scope: str, refresh_token: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": int(current_app.config["ACCESS_TOKEN_TTL"]),
        "scope": scope,
    }
    if refresh_token is not None:
        body["refresh_token"] = refresh_token
    return body


def user_tokens(
    client: OAuthClient, account: Account, scope: str, include_refresh_token: bool
) -> tuple[dict[str, Any], uuid.UUID]:
    """A new grant (its id is the tokens' ``sid``) and its first tokens, after an authorization code exchange."""
    grant, refresh = grants.create(client.id, account.id, scope)
    access = access_token(client, scope, account, grant.id)
    return token_response(access, scope, refresh if include_refresh_token else None), grant.id


def user_info(account: Account, scope: str) -> dict[str, Any]:
    """OIDC standard claims for ``scope`` (Core §5.4); ``email_verified`` once the parent opened the mailed link."""
    scopes = set(scope.split())
    info: dict[str, Any] = {"sub": str(account.id)}
    if "profile" in scopes:
        info["name"] = account.display_name
    if "email" in scopes and account.email:
        info["email"] = account.email
        info["email_verified"] = account.email_verified_at is not None
    return info


def id_token(
    client: OAuthClient,
    account: Account,
    scope: str,
    access: str,
    nonce: str | None,
    auth_time: int | None,
) -> str:
    key = signing.active_key(signing.ID_TOKEN_ALGORITHM)
    iat = int(now_ts())
    payload: dict[str, Any] = {
        "iss": current_app.config["ISSUER"],
        "aud": client.client_id,
        "iat": iat,
        "exp": iat + ID_TOKEN_TTL,
        "auth_time": auth_time or iat,
        **user_info(account, scope),
    }
    if nonce:
        payload["nonce"] = nonce
    at_hash = create_half_hash(access, key.algorithm)  # the ID token's alg (Core §3.1.3.6), not the access token's
    if at_hash is not None:
        payload["at_hash"] = at_hash.decode()
    metrics.inc("sv_auth_tokens_issued_total", kind="id_token")
    return _sign(payload, ID_TOKEN_TYPE, key)
