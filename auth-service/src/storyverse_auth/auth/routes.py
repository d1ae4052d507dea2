"""Register, login, refresh, logout, me. Views are thin: validate (apiflask), call a service, commit, respond."""

from __future__ import annotations

import logging
import uuid

from apiflask import APIBlueprint
from apiflask.schema_adapters.marshmallow import parser as refresh_parser
from flask import current_app, request

from .. import metrics
from ..errors import APIError
from ..extensions import db
from ..models import Account
from ..schemas import AcceptedOut, LoginIn, LogoutIn, MeOut, RefreshIn, RegisterIn, TokenOut
from ..sessions import service as sessions
from ..tokens.access import FRESH_SESSION_AMR, Principal, issue_access_token
from ..tokens.responses import refresh_body
from . import accounts, fast_refresh, throttle
from .bearer import bearer, current_claims
from .timing import response_floor

bp = APIBlueprint("auth", __name__, url_prefix="/api/auth", tag="Auth")

log = logging.getLogger(__name__)
MAX_REFRESH_TOKEN = fast_refresh.MAX_REFRESH_TOKEN  # RefreshIn's limit

REGISTER_ACCEPTED = {
    "status": "accepted",
    "detail": "If this address can be used, your account is ready and a confirmation e-mail is on its way.",
}


def _token_response(principal: Principal, session_id: uuid.UUID, refresh_token: str) -> dict:
    access = issue_access_token(principal, str(session_id), amr=FRESH_SESSION_AMR)
    metrics.inc("sv_auth_tokens_issued_total", kind="access")
    return {
        "access_token": access.token,
        "token_type": "Bearer",
        "expires_in": access.expires_in,
        "refresh_token": refresh_token,
        "session_id": str(session_id),
    }


@bp.post("/register")
@bp.input(RegisterIn, arg_name="body")
@bp.output(AcceptedOut, status_code=202)
@bp.doc(summary="Register a parent and a new family", responses=[422])
def register(body: dict):
    with response_floor():
        created = accounts.register_parent(
            body["email"], body["password"], body["display_name"], body.get("family_name"), body["time_zone"]
        )
        db.session.commit()
    log.info("register", extra={"event": "register", "outcome": "created" if created else "duplicate"})
    return REGISTER_ACCEPTED


@bp.post("/login")
@bp.input(LoginIn, arg_name="body")
@bp.output(TokenOut)
@bp.doc(summary="Log in with e-mail and password", responses=[401, 422, 429])
def login(body: dict):
    # argon2id plus two Redis round trips (three on Cluster) and one SQL statement, nothing committed before the
    # answer (docs/architecture.md §13): the throttle check; the account with every claim of its token
    # (accounts.sign_in); the throttle counter cleared and the session indexed and created (sessions/store.py
    # ``create``). The audit row is written once the answer has been sent (audit.py). (A comment, not a
    # docstring: apiflask publishes view docstrings in the OpenAPI description.)
    email, ip = accounts.normalise_email(body["email"]), request.remote_addr or "unknown"
    throttle.check(email, ip)
    principal = accounts.sign_in(email, body["password"])
    if principal is None:
        throttle.record_failure(email, ip, reason="bad_credentials")
        metrics.inc("sv_auth_logins_total", outcome="failure")
        raise APIError.invalid_credentials()
    clear = throttle.success_keys(email, ip)  # deleted in the round trip that creates the session
    session, refresh_token = sessions.create_session(principal.account_id, request.user_agent.string, ip, clear)
    response = _token_response(principal, session.id, refresh_token)
    metrics.inc("sv_auth_logins_total", outcome="success")
    log.info("login", extra={"event": "login", "account_id": str(principal.account_id), "session_id": str(session.id)})
    return response


def _refresh_token_in(body: object) -> str:
    """The body's refresh token (``body``: the JSON document as loaded, not validated). The common shape is checked
    by hand (marshmallow's load costs a refresh about as much as its Redis round trip); anything else goes through
    RefreshIn, so bad input gets the same 400/422 problem as before."""
    if type(body) is dict and len(body) == 1:
        token = body.get("refresh_token")
        if type(token) is str and 0 < len(token) <= MAX_REFRESH_TOKEN:
            return token
    return refresh_parser.parse(RefreshIn(), request, location="json")["refresh_token"]


@bp.post("/refresh")
@bp.input(RefreshIn, arg_name="body", validation=False)  # documents the body; _refresh_token_in validates it
@bp.output(TokenOut)  # documents the answer; the view returns a finished Response, not re-serialised
@bp.doc(summary="Rotate a refresh token", responses=[401, 422])
def refresh(body: object):
    # POST /refresh mostly never reaches here: fast_refresh.py answers it below Flask, and hands over what it
    # could not answer itself (a refused token, a backing service down) for this view to render.
    result = fast_refresh.outcome(request.environ) or sessions.rotate(_refresh_token_in(body))
    if result.error is not None:
        if result.error.code == "refresh_token_reused":
            log.warning("refresh token reuse", extra={"event": "refresh_reuse", "reason": result.error.code})
        raise result.error
    assert result.principal is not None and result.session_id is not None and result.refresh_token is not None
    access = issue_access_token(result.principal, str(result.session_id), amr=result.amr)
    metrics.inc("sv_auth_tokens_issued_total", kind="access")
    body = refresh_body(access, result.refresh_token, result.session_id)
    return current_app.response_class(body, mimetype="application/json")


@bp.post("/logout")
@bp.auth_required(bearer)
@bp.input(LogoutIn, arg_name="body")
@bp.output({}, status_code=204)
@bp.doc(summary="Log out this session (local), every other session (others) or all (global)", responses=[401, 422])
def logout(body: dict):
    claims = current_claims()
    sid, account_id = uuid.UUID(claims["sid"]), uuid.UUID(claims["sub"])
    scope = body["scope"]
    if scope in ("local", "global"):
        sessions.revoke_session(sid, "logout", account_id=account_id)
        sessions.denylist_jti(claims["jti"], claims["exp"], claims.get("sid"))
    if scope in ("others", "global"):
        sessions.revoke_all(account_id, "logout_" + scope, keep=None if scope == "global" else sid)
    db.session.commit()
    log.info("logout", extra={"event": "logout", "scope": scope, "account_id": str(account_id)})
    return ""


@bp.get("/me")
@bp.auth_required(bearer)
@bp.output(MeOut)
@bp.doc(summary="The authenticated account and its family", responses=[401])
def me():
    account = db.session.get(Account, uuid.UUID(current_claims()["sub"]))
    if account is None:
        raise APIError.token_revoked()
    family = account.family
    return {
        "id": str(account.id),
        "email": account.email,
        "role": account.role,
        "display_name": account.display_name,
        "family": {"id": str(family.id), "name": family.name, "tier": family.tier, "time_zone": family.time_zone},
    }
