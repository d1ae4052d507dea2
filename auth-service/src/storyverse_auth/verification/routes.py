"""Verify the address with the mailed link; ask for a new link (throttled)."""

from __future__ import annotations

import logging
import uuid

from apiflask import APIBlueprint

from .. import metrics
from ..auth.bearer import bearer, current_claims
from ..errors import APIError
from ..extensions import db
from ..models import Account
from ..schemas import AcceptedOut
from . import service
from .schemas import VerifyIn

bp = APIBlueprint("verification", __name__, url_prefix="/api/auth/email", tag="E-mail verification")

log = logging.getLogger(__name__)

RESENT = {"status": "accepted", "detail": "A new confirmation link is on its way."}


@bp.post("/verify")
@bp.input(VerifyIn, arg_name="body")
@bp.output({}, status_code=204)
@bp.doc(
    summary="Confirm the e-mail address with the token from the mailed link (single use, 24 h)", responses=[400, 422]
)
def verify(body: dict):
    if not service.consume(body["token"]):
        db.session.rollback()
        metrics.inc("sv_auth_failed_attempts_total", reason="bad_verify_token")
        raise APIError(400, "invalid_verification_token", "The confirmation link is invalid, used or expired.")
    db.session.commit()
    log.info("email verified", extra={"event": "email_verified"})
    return ""


@bp.post("/verification")
@bp.auth_required(bearer)
@bp.output(AcceptedOut, status_code=202)
@bp.doc(summary="Mail a new confirmation link (at most one a minute and five a day)", responses=[401, 403, 409, 429])
def resend():
    claims = current_claims()
    account = db.session.get(Account, uuid.UUID(claims["sub"]))
    if account is None:
        raise APIError.token_revoked()
    if account.email is None:
        raise APIError(403, "no_email", "This account has no e-mail address.")
    service.resend(account)
    db.session.commit()
    log.info("verification resent", extra={"event": "email_verification_resent", "account_id": str(account.id)})
    return RESENT
