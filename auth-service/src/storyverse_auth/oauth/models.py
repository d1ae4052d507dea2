"""OAuth 2.1 / OIDC provider tables: registered clients, authorization codes and grants (refresh-token families).

Client secrets, codes and refresh tokens are stored only as keyed hashes (HMAC-SHA256 under the token secret):
a copy of the database alone cannot use or verify them.
"""

from __future__ import annotations

import hmac
import uuid
from datetime import datetime
from typing import Any

from authlib.oauth2.rfc6749 import ClientMixin
from authlib.oidc.core import AuthorizationCodeMixin
from sqlalchemy import JSON, CheckConstraint, DateTime, ForeignKey, Integer, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from .. import secrets_box
from ..extensions import db

CLIENT_TYPES = ("public", "confidential")
# What each client type authenticates with at the token endpoint (RFC 6749 §2.3, OAuth 2.1 §2.4).
AUTH_METHODS = {"public": ("none",), "confidential": ("client_secret_basic", "client_secret_post")}
GRANT_TYPES = ("authorization_code", "refresh_token", "client_credentials")


def _tz() -> Any:
    return DateTime(timezone=True)


def secret_hash(secret: str) -> str:
    return secrets_box.token_mac(f"oauth-client-secret:{secret}")


class OAuthClient(db.Model, ClientMixin):
    """A registered application. Public clients (SPAs, mobile apps) have no secret and must use PKCE."""

    __tablename__ = "oauth_clients"
    __table_args__ = (
        CheckConstraint("client_type IN ('public', 'confidential')", name="ck_oauth_clients_type"),
        CheckConstraint(
            "(client_type = 'public') = (secret_hash IS NULL)", name="ck_oauth_clients_secret_iff_confidential"
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    client_id: Mapped[str] = mapped_column(String(64), unique=True)
    client_name: Mapped[str] = mapped_column(String(100))
    client_type: Mapped[str] = mapped_column(String(16))
    secret_hash: Mapped[str | None] = mapped_column(String(64))
    redirect_uris: Mapped[list[str]] = mapped_column(JSON, default=list)
    grant_types: Mapped[list[str]] = mapped_column(JSON, default=list)
    scopes: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(_tz())
    secret_rotated_at: Mapped[datetime | None] = mapped_column(_tz())
    disabled_at: Mapped[datetime | None] = mapped_column(_tz())

    # --- Authlib ClientMixin ---------------------------------------------------------------------------------
    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str | None:
        return None  # the authorization request must always name its redirect_uri (exact match)

    def get_allowed_scope(self, scope: str | None) -> str:
        if not scope:
            return ""
        requested = scope.split()
        return " ".join(s for s in dict.fromkeys(requested) if s in self.scopes)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.redirect_uris  # exact string match (RFC 9700 §4.1.3)

    def check_client_secret(self, client_secret: str) -> bool:
        if self.secret_hash is None:
            return False
        return hmac.compare_digest(self.secret_hash, secret_hash(client_secret))

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method in AUTH_METHODS[self.client_type]

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code" and "authorization_code" in self.grant_types

    def check_grant_type(self, grant_type: str) -> bool:
        if grant_type == "client_credentials" and self.client_type != "confidential":
            return False
        return grant_type in self.grant_types

    @property
    def is_confidential(self) -> bool:
        return self.client_type == "confidential"


class OAuthAuthorizationCode(db.Model, AuthorizationCodeMixin):
    """A short-lived, single-use authorization code. Kept after use (``used_at``) so a replay revokes its grant."""

    __tablename__ = "oauth_authorization_codes"

    code_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    client_pk: Mapped[uuid.UUID] = mapped_column(ForeignKey("oauth_clients.id", ondelete="CASCADE"), index=True)
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    redirect_uri: Mapped[str] = mapped_column(String(512))
    scope: Mapped[str] = mapped_column(String(512), default="")
    nonce: Mapped[str | None] = mapped_column(String(256))
    code_challenge: Mapped[str] = mapped_column(String(128))
    code_challenge_method: Mapped[str] = mapped_column(String(8))
    auth_time: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(_tz())
    expires_at: Mapped[datetime] = mapped_column(_tz(), index=True)
    used_at: Mapped[datetime | None] = mapped_column(_tz())
    # The grant the code was exchanged for: revoked if the code is presented again (RFC 6749 §4.1.2).
    grant_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("oauth_grants.id", ondelete="SET NULL"))

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def get_nonce(self) -> str | None:
        return self.nonce

    def get_auth_time(self) -> int:
        return self.auth_time


class OAuthGrant(db.Model):
    """One authorization of a client by a parent: the refresh-token family. Its id is the access tokens' ``sid``,
    so revoking it (``sv:revoked:{s:<id>}:sid``) also revokes every access token issued under it at the gateway."""

    __tablename__ = "oauth_grants"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    client_pk: Mapped[uuid.UUID] = mapped_column(ForeignKey("oauth_clients.id", ondelete="CASCADE"), index=True)
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    scope: Mapped[str] = mapped_column(String(512), default="")
    generation: Mapped[int] = mapped_column(Integer, default=0)
    refresh_token_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(_tz())
    last_used_at: Mapped[datetime] = mapped_column(_tz())
    rotated_at: Mapped[datetime | None] = mapped_column(_tz())
    expires_at: Mapped[datetime] = mapped_column(_tz())
    revoked_at: Mapped[datetime | None] = mapped_column(_tz())
    revoke_reason: Mapped[str | None] = mapped_column(String(32))
