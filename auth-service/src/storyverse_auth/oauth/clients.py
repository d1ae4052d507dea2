"""The client registry: create, list, rotate the secret of, disable. Add to the session; never commit.

Secrets are 256-bit random strings, returned once (at creation and rotation) and stored only as HMAC-SHA256.
Disabling a client revokes every grant it holds (their access tokens are denylisted by ``sid`` for the gateway).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select

from ..clock import now
from ..errors import APIError
from ..extensions import db
from . import grants as grant_store
from .models import CLIENT_TYPES, GRANT_TYPES, OAuthClient, secret_hash
from .scopes import SCOPES


class ClientError(ValueError):
    """An invalid client definition (the CLI prints it; the admin API answers 422)."""


@dataclass(frozen=True)
class Created:
    client: OAuthClient
    secret: str | None


def _check_redirect_uri(uri: str) -> None:
    parts = urlsplit(uri)
    if parts.fragment or "#" in uri:
        raise ClientError(f"redirect URI must not have a fragment: {uri}")
    if parts.scheme == "https" and parts.netloc:
        return
    if parts.scheme == "http" and parts.hostname in ("127.0.0.1", "localhost", "::1"):
        return  # loopback redirects for native apps and tests (RFC 8252 §7.3)
    if parts.scheme not in ("http", "https", "javascript", "data", "file", "") and "." in parts.scheme:
        return  # private-use URI scheme of a native app, reverse-domain form (RFC 8252 §7.1)
    raise ClientError(f"redirect URI must be https, http on loopback, or a reverse-domain app scheme: {uri}")


def validate(client_type: str, redirect_uris: list[str], grant_types: list[str], scopes: list[str]) -> None:
    if client_type not in CLIENT_TYPES:
        raise ClientError(f"client type must be one of {', '.join(CLIENT_TYPES)}")
    unknown = set(grant_types) - set(GRANT_TYPES)
    if unknown or not grant_types:
        raise ClientError(f"grant types must be a non-empty subset of {', '.join(GRANT_TYPES)}")
    if "client_credentials" in grant_types and client_type != "confidential":
        raise ClientError("only confidential clients may use client_credentials")
    if "refresh_token" in grant_types and "authorization_code" not in grant_types:
        raise ClientError("refresh_token needs authorization_code")
    if "authorization_code" in grant_types and not redirect_uris:
        raise ClientError("authorization_code needs at least one redirect URI")
    for uri in redirect_uris:
        _check_redirect_uri(uri)
    if set(scopes) - set(SCOPES):
        raise ClientError(f"scopes must be a subset of {' '.join(SCOPES)}")


def new_secret() -> str:
    return "svcs_" + secrets.token_urlsafe(32)


def create(
    name: str,
    client_type: str,
    redirect_uris: list[str],
    grant_types: list[str],
    scopes: list[str] | None = None,
) -> Created:
    scopes = list(SCOPES) if scopes is None else scopes
    validate(client_type, redirect_uris, grant_types, scopes)
    secret = new_secret() if client_type == "confidential" else None
    client = OAuthClient(
        client_id="svc_" + secrets.token_urlsafe(16),
        client_name=name,
        client_type=client_type,
        secret_hash=secret_hash(secret) if secret else None,
        redirect_uris=list(dict.fromkeys(redirect_uris)),
        grant_types=list(dict.fromkeys(grant_types)),
        scopes=list(dict.fromkeys(scopes)),
        created_at=now(),
    )
    db.session.add(client)
    return Created(client, secret)


def find(client_id: str) -> OAuthClient | None:
    return db.session.scalar(select(OAuthClient).where(OAuthClient.client_id == client_id))


def get(client_id: str) -> OAuthClient:
    client = find(client_id)
    if client is None:
        raise APIError(404, "client_not_found", "No such OAuth client.")
    return client


def active(client_id: str) -> OAuthClient | None:
    """The client if it exists and is enabled (Authlib's ``query_client``: a disabled client does not exist)."""
    if not client_id or len(client_id) > 64:
        return None
    return db.session.scalar(
        select(OAuthClient).where(OAuthClient.client_id == client_id, OAuthClient.disabled_at.is_(None))
    )


def list_all() -> list[OAuthClient]:
    return list(db.session.scalars(select(OAuthClient).order_by(OAuthClient.created_at, OAuthClient.client_id)))


def rotate_secret(client: OAuthClient) -> str:
    if client.client_type != "confidential":
        raise ClientError("public clients have no secret")
    secret = new_secret()
    client.secret_hash = secret_hash(secret)
    client.secret_rotated_at = now()
    return secret


def disable(client: OAuthClient) -> int:
    """Disable the client and revoke its grants; returns how many grants were revoked."""
    if client.disabled_at is None:
        client.disabled_at = now()
    return grant_store.revoke_client(client.id, "client_disabled")


def describe(client: OAuthClient) -> dict[str, Any]:
    return {
        "client_id": client.client_id,
        "client_name": client.client_name,
        "client_type": client.client_type,
        "token_endpoint_auth_method": "none" if client.client_type == "public" else "client_secret_basic",
        "redirect_uris": list(client.redirect_uris),
        "grant_types": list(client.grant_types),
        "scopes": list(client.scopes),
        "created_at": client.created_at.isoformat(),
        "secret_rotated_at": client.secret_rotated_at.isoformat() if client.secret_rotated_at else None,
        "disabled": client.disabled_at is not None,
    }
