"""Forgot / reset / change password. A reset or a change revokes every session and notifies by mail."""

from __future__ import annotations

import logging
import uuid

from apiflask import APIBlueprint
from flask import request

from .. import metrics
from ..auth import accounts, throttle
from ..auth.bearer import bearer, current_claims
from ..auth.timing import response_floor
from ..errors import APIError
from ..extensions import db
from ..models import Account
from ..schemas import AcceptedOut, ChangeIn, ForgotIn, ResetIn
from ..sessions import service as sessions
from . import recovery

bp = APIBlueprint("password", __name__, url_prefix="/api/auth/password", tag="Password")

log = logging.getLogger(__name__)

FORGOT_ACCEPTED = {
    "status": "accepted",
    "detail": "If an account uses this address, a password reset link has been sent to it.",
}


@bp.post("/forgot")
@bp.input(ForgotIn, arg_name="body")
@bp.output(AcceptedOut, status_code=202)
@bp.doc(summary="Request a password reset e-mail", responses=[422, 429])
def forgot(body: dict):
    email, ip = accounts.normalise_email(body["email"]), request.remote_addr or "unknown"
    throttle.check(email, ip)
    with response_floor():
        recovery.request_reset(email)
        # Every request counts toward the per-(address, IP) back-off: mail bombing is throttled like guessing.
        throttle.record_failure(email, ip, reason="reset_request")
        db.session.commit()
    return FORGOT_ACCEPTED


@bp.post("/reset")
@bp.input(ResetIn, arg_name="body")
@bp.output({}, status_code=204)
@bp.doc(summary="Set a new password with a reset token", responses=[400, 422])
def reset(body: dict):
    account_id = recovery.consume(body["token"])
    account = db.session.get(Account, account_id) if account_id else None
    if account is None:
        db.session.rollback()
        metrics.inc("sv_auth_failed_attempts_total", reason="bad_reset_token")
        raise APIError.invalid_reset_token()
    accounts.set_password(account, body["new_password"])  # policy failure rolls back: the token stays usable
    revoked = sessions.revoke_all(account.id, "password_reset")
    db.session.commit()
    metrics.inc("sv_auth_password_resets_total", stage="completed")
    log.info("password reset", extra={"event": "password_reset", "account_id": str(account.id), "count": revoked})
    return ""


@bp.post("/change")
@bp.auth_required(bearer)
@bp.input(ChangeIn, arg_name="body")
@bp.output({}, status_code=204)
@bp.doc(summary="Change the password (revokes every session)", responses=[401, 422, 429])
def change(body: dict):
    claims = current_claims()
    account = db.session.get(Account, uuid.UUID(claims["sub"]))
    if account is None or account.email is None:
        raise APIError.token_revoked()
    ip = request.remote_addr or "unknown"
    throttle.check(account.email, ip)
    if accounts.authenticate(account.email, body["current_password"]) is None:
        throttle.record_failure(account.email, ip, reason="bad_current_password")
        db.session.rollback()
        raise APIError.invalid_credentials()
    accounts.set_password(account, body["new_password"])
    revoked = sessions.revoke_all(account.id, "password_change")
    sessions.denylist_jti(claims["jti"], claims["exp"], claims.get("sid"))
    db.session.commit()
    log.info("password change", extra={"event": "password_change", "account_id": str(account.id), "count": revoked})
    return ""
