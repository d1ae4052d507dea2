"""OAuth 2.1 / OIDC protocol endpoints: authorize (server-rendered login + consent), token, revoke, introspect,
userinfo. Form-encoded and answered in the OAuth error format (RFC 6749 §5.2), so they are kept out of the OpenAPI
document (see ``__init__``); the discovery document describes them instead.

The consent page works without JavaScript: one form, re-validated on POST, protected against CSRF by a
double-submit cookie (random, ``HttpOnly``, ``SameSite=Strict``) whose HMAC is the form's hidden token, bound to
the client. There is no login cookie: every authorization asks for the parent's password (no silent SSO, so
``prompt=none`` always answers ``login_required``). Children are refused here and at the token endpoint.
"""

from __future__ import annotations

import hmac
import logging
import secrets
import uuid
from typing import Any

from authlib.oauth2.rfc6749.errors import AccessDeniedError, OAuth2Error
from authlib.oidc.core.errors import LoginRequiredError
from flask import current_app, g, make_response, render_template, request
from sqlalchemy import select

from .. import metrics, secrets_box
from ..auth import accounts, throttle
from ..clock import now_ts
from ..devices import service as devices
from ..errors import APIError
from ..extensions import db
from ..models import Account
from ..sessions import service as sessions
from ..tokens.access import decode_access_token
from . import bp, issue
from .models import OAuthGrant
from .scopes import SCOPES
from .server import PARENT_ONLY, server

log = logging.getLogger(__name__)

CSRF_COOKIE = "sv_oauth_csrf"
REQUEST_FIELDS = (
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "nonce",
    "code_challenge",
    "code_challenge_method",
    "prompt",
)
SCOPE_TEXT = {
    "openid": "Know who you are (your StoryVerse account id)",
    "profile": "See your display name",
    "email": "See your e-mail address",
}
CHILD_REFUSED = "Children cannot connect apps to StoryVerse. Please ask a parent."
_PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Pragma": "no-cache",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # No form-action: after the POST the browser follows a redirect to the client, which form-action would block.
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'",
}


def _csrf_token(cookie: str, client_id: str) -> str:
    return secrets_box.token_mac(f"oauth-csrf:{cookie}:{client_id}")


def _page(template: str, status: int = 200, cookie: str | None = None, **context: Any):
    response = make_response(render_template(template, **context), status)
    response.headers.update(_PAGE_HEADERS)
    if cookie is not None:
        response.set_cookie(
            CSRF_COOKIE,
            cookie,
            httponly=True,
            samesite="Strict",
            secure=current_app.config["ISSUER"].startswith("https://"),
            path="/oauth/authorize",
        )
    return response


def _protocol_error(error: OAuth2Error):
    """Redirect the error to the client when its redirect URI was validated; otherwise show it (RFC 6749 §4.1.2.1)."""
    if error.redirect_uri:
        return server().handle_error_response(None, error)
    metrics.inc("sv_auth_failed_attempts_total", reason="oauth_" + error.error)
    return _page("oauth/error.html", 400, error=error.error, description=error.get_error_description())


def _consent(grant, cookie: str, status: int = 200, message: str | None = None):
    client = grant.request.client
    scopes = [s for s in (grant.request.scope or "").split() if s in SCOPES]
    fields = {name: request.values.get(name) for name in REQUEST_FIELDS if request.values.get(name)}
    return _page(
        "oauth/authorize.html",
        status,
        cookie=cookie,
        client_name=client.client_name,
        scopes=[SCOPE_TEXT[s] for s in scopes],
        fields=fields,
        csrf_token=_csrf_token(cookie, client.client_id),
        message=message,
        email=request.form.get("email", ""),
    )


@bp.get("/authorize")
def authorize_page():
    try:
        grant = server().get_consent_grant(end_user=None)
    except OAuth2Error as error:
        return _protocol_error(error)
    if request.args.get("prompt") == "none":  # no single sign-on session: the parent must always sign in
        return _protocol_error(LoginRequiredError(redirect_uri=grant.redirect_uri, state=request.args.get("state")))
    cookie = request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(32)
    return _consent(grant, cookie)


@bp.post("/authorize")
def authorize_submit():
    cookie = request.cookies.get(CSRF_COOKIE, "")
    sent = request.form.get("csrf_token", "")
    expected = _csrf_token(cookie, request.form.get("client_id", ""))
    if not cookie or not hmac.compare_digest(sent.encode(), expected.encode()):
        metrics.inc("sv_auth_failed_attempts_total", reason="oauth_csrf")
        return _page("oauth/error.html", 400, error="invalid_request", description="The form expired; start again.")
    oauth = server()
    try:
        grant = oauth.get_consent_grant(end_user=None)
    except OAuth2Error as error:
        return _protocol_error(error)
    if request.form.get("action") != "approve":
        return oauth.create_authorization_response(grant=grant, grant_user=None)
    ip = request.remote_addr or "unknown"
    if request.form.get("family_code") or request.form.get("username") or request.form.get("pin"):
        return _child_attempt(grant, cookie, ip)
    email = accounts.normalise_email(request.form.get("email", ""))
    password = request.form.get("password", "")
    if not email or not password:
        return _consent(grant, cookie, 400, "Enter your e-mail address and password.")
    try:
        throttle.check(email, ip)
    except APIError:
        return _consent(grant, cookie, 429, "Too many attempts. Wait a few minutes and try again.")
    account = accounts.authenticate(email, password)
    if account is None:
        throttle.record_failure(email, ip, reason="bad_credentials")
        db.session.rollback()
        return _consent(grant, cookie, 401, "The e-mail address or password is incorrect.")
    throttle.record_success(email, ip)
    if account.role != "parent":
        db.session.commit()
        return _deny(grant, PARENT_ONLY, account.id)
    account.sv_auth_time = int(now_ts())  # type: ignore[attr-defined]  (read by save_authorization_code)
    response = oauth.create_authorization_response(grant=grant, grant_user=account)
    db.session.commit()
    log.info(
        "oauth consent",
        extra={"event": "oauth_consent", "account_id": str(account.id), "client_id": grant.request.client.client_id},
    )
    return response


def _child_attempt(grant, cookie: str, ip: str):
    """A child signing in on the consent page: verified like /child/login, then always refused."""
    try:
        child = devices.login_child(
            request.form.get("family_code", ""), request.form.get("username", ""), request.form.get("pin", ""), ip
        )
    except APIError as exc:
        db.session.commit()
        if exc.code == "too_many_attempts":
            return _consent(grant, cookie, 429, "Too many attempts. Wait a few minutes and try again.")
        return _consent(grant, cookie, 401, "The family code, username or PIN is incorrect.")
    db.session.commit()
    return _deny(grant, CHILD_REFUSED, child.id)


def _deny(grant, description: str, account_id: uuid.UUID):
    metrics.inc("sv_auth_failed_attempts_total", reason="oauth_not_parent")
    log.info("oauth consent refused", extra={"event": "oauth_not_parent", "account_id": str(account_id)})
    error = AccessDeniedError(description, redirect_uri=grant.redirect_uri, state=request.values.get("state"))
    return server().handle_error_response(None, error)


def _finish(response):
    ok = response.status_code < 400
    if ok or g.get("sv_oauth_commit", False):
        db.session.commit()
    else:
        db.session.rollback()
    return response


@bp.post("/token")
def token():
    return _finish(server().create_token_response())


@bp.post("/revoke")
def revoke():
    return _finish(server().create_endpoint_response("revocation"))


@bp.post("/introspect")
def introspect():
    return _finish(server().create_endpoint_response("introspection"))


def _bearer_error(status: int, error: str, description: str):
    body = {"error": error, "error_description": description}
    challenge = f'Bearer error="{error}", error_description="{description}"'
    return body, status, {"WWW-Authenticate": challenge, "Cache-Control": "no-store"}


@bp.route("/userinfo", methods=["GET", "POST"])
def userinfo():
    """OIDC Core §5.3: the claims of the token's scope, for access tokens issued through OAuth with ``openid``."""
    header = request.headers.get("Authorization", "")
    if not header.lower().startswith("bearer ") or not header[7:].strip():
        return _bearer_error(401, "invalid_token", "A bearer access token is required.")
    try:
        claims = decode_access_token(header[7:].strip())
    except APIError:
        return _bearer_error(401, "invalid_token", "The access token is invalid or expired.")
    sid = claims.get("sid")
    if sessions.is_revoked(claims) or not sid:
        return _bearer_error(401, "invalid_token", "The access token has been revoked.")
    scope = str(claims.get("scope", ""))
    if "openid" not in scope.split():
        return _bearer_error(403, "insufficient_scope", "The access token lacks the openid scope.")
    grant = db.session.scalar(select(OAuthGrant).where(OAuthGrant.id == uuid.UUID(sid)))
    if grant is None or grant.revoked_at is not None:
        return _bearer_error(401, "invalid_token", "The access token has been revoked.")
    account = db.session.get(Account, grant.account_id)
    if account is None:
        return _bearer_error(401, "invalid_token", "The account no longer exists.")
    return issue.user_info(account, scope), 200, {"Cache-Control": "no-store"}
