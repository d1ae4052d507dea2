"""The Authlib authorization server: grants, PKCE (S256 only), OIDC, revocation and introspection, wired to our
models and token issuers. One server per app (``app.extensions["sv_oauth"]``).

Registered grants are exactly those advertised: ``authorization_code`` (with PKCE, required for every client, and
OIDC), ``refresh_token`` (rotation on every use) and ``client_credentials`` (confidential clients). Anything else,
including ``password`` and the implicit ``token`` response type, is refused by Authlib with
``unsupported_grant_type`` / ``unsupported_response_type`` (RFC 9700 §2.1.2, §2.4).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.integrations.flask_oauth2.requests import FlaskOAuth2Payload, FlaskOAuth2Request
from authlib.oauth2.rfc6749 import ClientMixin, TokenMixin, grants
from authlib.oauth2.rfc6749.errors import InvalidGrantError, InvalidRequestError, InvalidScopeError
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from authlib.oidc.core.grants import OpenIDCode
from flask import Flask, current_app, g
from flask import request as flask_request
from sqlalchemy import select, update
from storyverse_contracts.keys import revoked_jti_key, revoked_sid_key

from .. import secrets_box
from ..clock import now, now_ts
from ..errors import APIError
from ..extensions import db, redis_store
from ..models import Account
from ..sessions import service as sessions
from ..tokens.access import decode_access_token
from . import clients, issue
from . import grants as grant_store
from .models import OAuthAuthorizationCode, OAuthClient
from .scopes import SCOPES

CODE_TTL = 60  # seconds (RFC 6749 §4.1.2 recommends at most 10 minutes)
SECRET_METHODS = ["client_secret_basic", "client_secret_post"]
ALL_METHODS = [*SECRET_METHODS, "none"]
PARENT_ONLY = "Only a parent account can authorise third-party applications."


def must_commit() -> None:
    """Keep this request's writes even if the response is an error (a consumed code, a reuse revocation)."""
    g.sv_oauth_commit = True


def code_hash(code: str) -> str:
    return secrets_box.token_mac(f"oauth-code:{code}")


class _Request(FlaskOAuth2Request):
    """Authlib's Flask request without its https check on the request URL: TLS terminates at the gateway
    (docs/architecture.md §8), so the service itself speaks plain HTTP behind it."""

    def __init__(self, request) -> None:
        self._request = request
        self.method, self.uri, self.headers, self._body = request.method, request.url, request.headers, None
        self.payload = FlaskOAuth2Payload(request)
        self.client = self.auth_method = self.user = self.authorization_code = None
        self.refresh_token = self.credential = self._scope = None


class Server(AuthorizationServer):
    def create_oauth2_request(self, request):
        return _Request(flask_request)

    def query_client(self, client_id):
        return clients.active(client_id)

    def save_token(self, token, request):
        """Access tokens are self-contained JWTs; grants were stored when they were created."""


def _parent(account_id: uuid.UUID) -> Account:
    account = db.session.get(Account, account_id)
    if account is None or account.role != "parent":
        raise InvalidGrantError(PARENT_ONLY)
    return account


class S256Challenge(CodeChallenge):
    """PKCE, S256 only, required for every client (OAuth 2.1 §4.1.1, RFC 9700 §2.1.1): no challenge, or ``plain``,
    is ``invalid_request`` at the authorization endpoint; the verifier is then always checked."""

    DEFAULT_CODE_CHALLENGE_METHOD = "S256"
    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]

    def validate_code_challenge(self, grant, redirect_uri):
        data = grant.request.payload.data
        if not data.get("code_challenge"):
            raise InvalidRequestError("PKCE is required: send code_challenge with code_challenge_method=S256.")
        if data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("Only code_challenge_method=S256 is supported.")
        super().validate_code_challenge(grant, redirect_uri)

    def validate_code_verifier(self, grant, result):
        if not grant.request.form.get("code_verifier"):
            raise InvalidRequestError("Missing 'code_verifier'.")
        super().validate_code_verifier(grant, result)


class AuthorizationCodeGrant(grants.AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ALL_METHODS

    @staticmethod
    def validate_authorization_redirect_uri(request, client):
        uri = request.payload.redirect_uri
        if not uri:
            raise InvalidRequestError("Missing 'redirect_uri' in request.")
        if not client.check_redirect_uri(uri):
            raise InvalidRequestError("The redirect_uri is not registered for this client (exact match).")
        return uri

    def save_authorization_code(self, code, request):
        ts = now()
        data = request.payload.data
        db.session.add(
            OAuthAuthorizationCode(
                code_hash=code_hash(code),
                client_pk=request.client.id,
                account_id=request.user.id,
                redirect_uri=request.payload.redirect_uri,
                scope=request.scope or "",
                nonce=data.get("nonce") or None,
                code_challenge=data["code_challenge"],
                code_challenge_method=data["code_challenge_method"],
                auth_time=int(getattr(request.user, "sv_auth_time", now_ts())),
                created_at=ts,
                expires_at=ts + timedelta(seconds=CODE_TTL),
            )
        )

    def query_authorization_code(self, code, client):
        """Consume the code atomically (single use even under concurrency); a replay revokes its grant."""
        if not isinstance(code, str) or len(code) > 256:
            return None
        hashed, ts = code_hash(code), now()
        must_commit()
        consumed = db.session.scalar(
            update(OAuthAuthorizationCode)
            .where(
                OAuthAuthorizationCode.code_hash == hashed,
                OAuthAuthorizationCode.client_pk == client.id,
                OAuthAuthorizationCode.used_at.is_(None),
                OAuthAuthorizationCode.expires_at > ts,
            )
            .values(used_at=ts)
            .returning(OAuthAuthorizationCode)
            .execution_options(synchronize_session=False)
        )
        if consumed is not None:
            return consumed
        replayed = db.session.scalar(
            select(OAuthAuthorizationCode.grant_id).where(
                OAuthAuthorizationCode.code_hash == hashed,
                OAuthAuthorizationCode.client_pk == client.id,
                OAuthAuthorizationCode.used_at.is_not(None),
            )
        )
        if replayed is not None:
            grant_store.revoke(replayed, "code_reuse")
        return None

    def delete_authorization_code(self, authorization_code):
        """Kept (marked used) so that a replay can be detected; expired codes are pruned by the CLI."""

    def authenticate_user(self, authorization_code):
        return _parent(authorization_code.account_id)

    def generate_token(self, user=None, scope=None, grant_type=None, expires_in=None, include_refresh_token=True):
        body, grant_id = issue.user_tokens(self.request.client, user, scope or "", include_refresh_token)
        self.request.authorization_code.grant_id = grant_id
        db.session.execute(
            update(OAuthAuthorizationCode)
            .where(OAuthAuthorizationCode.code_hash == self.request.authorization_code.code_hash)
            .values(grant_id=grant_id)
            .execution_options(synchronize_session=False)
        )
        return body


class OIDCCode(OpenIDCode):
    """ID tokens signed with PyJWT by the active key: ``typ: JWT``, ``aud`` = client_id, ``nonce``, ``at_hash``."""

    def exists_nonce(self, nonce, request):
        client = clients.active(request.payload.client_id)
        if client is None:
            return False
        stmt = select(OAuthAuthorizationCode.code_hash).where(
            OAuthAuthorizationCode.client_pk == client.id, OAuthAuthorizationCode.nonce == nonce
        )
        return db.session.scalar(stmt.limit(1)) is not None

    def generate_user_info(self, user, scope):
        return issue.user_info(user, scope)

    def encode_id_token(self, token, request):
        code = request.authorization_code
        return issue.id_token(
            request.client, request.user, token["scope"], token["access_token"], code.nonce, code.auth_time
        )


class RefreshTokenGrant(grants.RefreshTokenGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ALL_METHODS
    INCLUDE_NEW_REFRESH_TOKEN = True

    def _validate_request_token(self, client):
        token = self.request.form.get("refresh_token")
        if not token:
            raise InvalidRequestError("Missing 'refresh_token' in request.")
        scope = self.request.payload.scope
        rotation = grant_store.rotate(token, client.id)
        if rotation.reused:
            must_commit()
            raise InvalidGrantError("The refresh token was already used; the grant has been revoked.")
        if rotation.grant_id is None:
            raise InvalidGrantError("The refresh token is invalid, expired or revoked.")
        if scope and not set(scope.split()) <= set(rotation.scope.split()):
            raise InvalidScopeError()
        return _Rotated(rotation)

    def authenticate_user(self, refresh_token):
        return _parent(refresh_token.rotation.account_id)

    def issue_token(self, user, refresh_token):
        rotation = refresh_token.rotation
        scope = self.request.payload.scope or rotation.scope
        access = issue.access_token(self.request.client, scope, user, rotation.grant_id)
        return issue.token_response(access, scope, rotation.refresh_token)

    def revoke_old_credential(self, refresh_token):
        """Done by the rotation itself (the old token's hash was replaced in the same UPDATE)."""


@dataclass
class _Rotated(TokenMixin):
    rotation: grant_store.Rotation

    def check_client(self, client):
        return True  # the rotation UPDATE was already scoped to this client

    def get_scope(self):
        return self.rotation.scope


class ClientCredentialsGrant(grants.ClientCredentialsGrant):
    """Partner back-ends: the token's subject is the client itself, never a user (no refresh token, no ID token)."""

    TOKEN_ENDPOINT_AUTH_METHODS = SECRET_METHODS

    def validate_token_request(self):
        super().validate_token_request()
        if self.request.payload.scope:
            raise InvalidScopeError("Client credentials tokens carry no user scopes (openid, profile, email).")

    def generate_token(self, user=None, scope=None, grant_type=None, expires_in=None, include_refresh_token=True):
        return issue.token_response(issue.access_token(self.request.client, "", None, None), "")


# --- revocation (RFC 7009) and introspection (RFC 7662) -----------------------------------------------------------


@dataclass
class TokenHandle(TokenMixin):
    """A token presented to revocation or introspection: an access token's verified claims, or a refresh token's
    grant."""

    kind: str  # "access_token" | "refresh_token"
    client_id: str
    claims: dict[str, Any] = field(default_factory=dict)
    grant_id: uuid.UUID | None = None
    current: bool = False  # refresh token: is it the grant's current one

    def check_client(self, client: ClientMixin) -> bool:
        return self.client_id == client.get_client_id()

    def get_scope(self) -> str:
        return self.claims.get("scope", "")

    def get_expires_in(self) -> int:
        return int(self.claims.get("exp", 0) - now_ts())

    def is_expired(self) -> bool:
        return self.kind == "access_token" and self.claims["exp"] <= now_ts()

    def is_revoked(self) -> bool:
        if self.kind == "refresh_token":
            return not self.current or self.grant_id is None or not grant_store.is_live(self.grant_id)
        pipe = redis_store.client.pipeline(transaction=False)
        pipe.exists(revoked_jti_key(str(self.claims["jti"]), self.claims.get("sid")))
        pipe.exists(revoked_sid_key(str(self.claims.get("sid", ""))))
        if any(pipe.execute()):
            return True
        sid = self.claims.get("sid")
        return sid is not None and not grant_store.is_live(uuid.UUID(sid))


def find_token(token: str, hint: str | None) -> TokenHandle | None:
    """Resolve a token string to its handle (None for anything this server did not issue to an OAuth client)."""
    if not isinstance(token, str) or not token or len(token) > 8192:
        return None
    parsed = grant_store.parse_refresh_token(token)
    if parsed is not None:
        grant = db.session.get(grant_store.OAuthGrant, parsed[0])
        if grant is None:
            return None
        client = db.session.get(OAuthClient, grant.client_pk)
        current = grant.generation == parsed[1] and grant.refresh_token_hash == secrets_box.sha256_hex(token)
        claims = {"scope": grant.scope, "sub": str(grant.account_id), "exp": grant.expires_at.timestamp()}
        return TokenHandle("refresh_token", client.client_id if client else "", claims, grant.id, current)
    try:
        claims = decode_access_token(token)
    except APIError:
        return None
    client_id = claims.get("client_id")
    if not isinstance(client_id, str) or clients.find(client_id) is None:
        return None  # a first-party token (client_id "storyverse"): not this endpoint's business
    return TokenHandle("access_token", client_id, claims)


class Revocation(RevocationEndpoint):
    CLIENT_AUTH_METHODS = ALL_METHODS

    def query_token(self, token_string, token_type_hint):
        return find_token(token_string, token_type_hint)

    def revoke_token(self, token, request):
        if token.kind == "refresh_token" and token.grant_id is not None:
            grant_store.revoke(token.grant_id, "revoked_by_client")
        elif token.kind == "access_token":
            sessions.denylist_jti(str(token.claims["jti"]), float(token.claims["exp"]), token.claims.get("sid"))


class Introspection(IntrospectionEndpoint):
    """Confidential clients only, and only for tokens issued to themselves (RFC 7662 §4: no token scanning)."""

    CLIENT_AUTH_METHODS = SECRET_METHODS

    def query_token(self, token_string, token_type_hint):
        return find_token(token_string, token_type_hint)

    def check_permission(self, token, client, request):
        return token.check_client(client)

    def introspect_token(self, token):
        body: dict[str, Any] = {"active": True, "client_id": token.client_id, "token_type": token.kind}
        claims = token.claims
        if token.kind == "access_token":
            body["token_type"] = "Bearer"  # noqa: S105
            for name in ("scope", "sub", "exp", "iat", "nbf", "iss", "aud", "jti", "role", "family_id"):
                if name in claims:
                    body[name] = claims[name]
        else:
            body.update(scope=claims["scope"], sub=claims["sub"], exp=int(claims["exp"]))
        return body


def init_app(app: Flask) -> Server:
    server = Server()
    server.init_app(app, query_client=clients.active)
    server.scopes_supported = list(SCOPES)
    server.register_grant(AuthorizationCodeGrant, [S256Challenge(required=True), OIDCCode(require_nonce=False)])
    server.register_grant(RefreshTokenGrant)
    server.register_grant(ClientCredentialsGrant)
    server.register_endpoint(Revocation)
    server.register_endpoint(Introspection)
    app.extensions["sv_oauth"] = server
    return server


def server() -> Server:
    return current_app.extensions["sv_oauth"]
