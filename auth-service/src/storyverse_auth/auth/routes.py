"""Register, login, refresh, logout, me. Views are thin: validate (apiflask), call a service, commit, respond."""

from __future__ import annotations

import logging
import uuid

from apiflask import APIBlueprint
from flask import request

from .. import metrics
from ..errors import APIError
from ..extensions import db
from ..models import Account
from ..schemas import AcceptedOut, LoginIn, LogoutIn, MeOut, RefreshIn, RegisterIn, TokenOut
from ..sessions import service as sessions
from ..tokens.access import Principal, issue_access_token
from . import accounts, throttle
from .bearer import bearer, current_claims
from .timing import response_floor

bp = APIBlueprint("auth", __name__, url_prefix="/api/auth", tag="Auth")

log = logging.getLogger(__name__)

REGISTER_ACCEPTED = {
    "status": "accepted",
    "detail": "If this address can be used, your account is ready and a confirmation e-mail is on its way.",
}


def _token_response(principal: Principal, session_id: uuid.UUID, refresh_token: str) -> dict:
    access = issue_access_token(principal, str(session_id))
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
    email, ip = accounts.normalise_email(body["email"]), request.remote_addr or "unknown"
    throttle.check(email, ip)
    account = accounts.authenticate(email, body["password"])
    if account is None:
        throttle.record_failure(email, ip, reason="bad_credentials")
        metrics.inc("sv_auth_logins_total", outcome="failure")
        db.session.rollback()
        raise APIError.invalid_credentials()
    throttle.record_success(email, ip)
    session, refresh_token = sessions.create_session(account, request.user_agent.string, ip)
    session_id, account_id = session.id, account.id
    response = _token_response(Principal.of(account), session_id, refresh_token)
    db.session.commit()
    metrics.inc("sv_auth_logins_total", outcome="success")
    log.info("login", extra={"event": "login", "account_id": str(account_id), "session_id": str(session_id)})
    return response


@bp.post("/refresh")
@bp.input(RefreshIn, arg_name="body")
@bp.output(TokenOut)
@bp.doc(summary="Rotate a refresh token", responses=[401, 422])
def refresh(body: dict):
    result = sessions.rotate(body["refresh_token"])
    if result.error is not None:
        db.session.commit()  # a reuse revocation must stick
        if result.error.code == "refresh_token_reused":
            log.warning("refresh token reuse", extra={"event": "refresh_reuse", "reason": result.error.code})
        raise result.error
    assert result.principal is not None and result.session_id is not None and result.refresh_token is not None
    response = _token_response(result.principal, result.session_id, result.refresh_token)
    db.session.commit()
    return response


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
