"""Parents set up, use and remove a TOTP second factor; a check marks the current session (step-up)."""

from __future__ import annotations

import logging

from apiflask import APIBlueprint
from flask import request

from ..auth.bearer import bearer, current_claims
from ..errors import APIError
from ..extensions import db
from ..families import service as families
from ..tokens import responses as token_responses
from . import service
from .schemas import CodeIn, EnrolIn, EnrolOut, MfaStatusOut, RecoveryCodesOut, VerifiedOut, VerifyIn

bp = APIBlueprint("mfa", __name__, url_prefix="/api/auth/mfa", tag="MFA")

log = logging.getLogger(__name__)


def _ip() -> str:
    return request.remote_addr or "unknown"


def _audit(event: str, account_id, **extra) -> None:
    log.info(event, extra={"event": event, "account_id": str(account_id), **extra})


@bp.get("")
@bp.auth_required(bearer)
@bp.output(MfaStatusOut)
@bp.doc(summary="The parent's second factors", responses=[401, 403])
def get_status():
    return service.status(families.require_parent(current_claims()))


@bp.post("/totp")
@bp.auth_required(bearer)
@bp.input(EnrolIn, arg_name="body")
@bp.output(EnrolOut, status_code=201)
@bp.doc(
    summary="Start setting up an authenticator app (needs the password): the secret, its otpauth URI and QR code",
    responses=[401, 403, 409, 429],
)
def begin(body: dict):
    parent = families.require_parent(current_claims())
    families.reauthenticate(parent, body["password"], _ip())
    out = service.begin(parent)
    db.session.commit()
    _audit("mfa_enrol_started", parent.id)
    return out


@bp.post("/totp/confirm")
@bp.auth_required(bearer)
@bp.input(CodeIn, arg_name="body")
@bp.output(RecoveryCodesOut)
@bp.doc(
    summary="Confirm the app with a first code; answers the recovery codes (shown once)", responses=[401, 403, 409, 429]
)
def confirm(body: dict):
    claims = current_claims()
    parent = families.require_parent(claims)
    codes = service.confirm(parent, body["code"], _ip())
    db.session.commit()
    service.mark_session(str(claims["sid"]))
    _audit("mfa_enabled", parent.id)
    return {"recovery_codes": codes, "caller_token": token_responses.for_current_session(parent, claims)}


@bp.post("/verify")
@bp.auth_required(bearer)
@bp.input(VerifyIn, arg_name="body")
@bp.output(VerifiedOut)
@bp.doc(
    summary="Step up: check a code (or a recovery code) for this session; answers a token with the new `amr`",
    responses=[401, 403, 409, 429],
)
def verify(body: dict):
    claims = current_claims()
    parent = families.require_parent(claims)
    method = service.verify(parent, body.get("code"), body.get("recovery_code"), _ip())
    db.session.commit()
    service.mark_session(str(claims["sid"]))
    _audit("mfa_verified", parent.id, outcome=method)
    return {
        "method": method,
        "recovery_codes_left": service.status(parent)["recovery_codes_left"],
        "caller_token": token_responses.for_current_session(parent, claims),
    }


@bp.post("/recovery-codes")
@bp.auth_required(bearer)
@bp.output(RecoveryCodesOut)
@bp.doc(summary="Replace the recovery codes (needs a recent second-factor check)", responses=[401, 403, 409])
def regenerate():
    claims = current_claims()
    parent = families.require_parent(claims)
    if not service.enabled(parent.id):
        raise APIError(409, "mfa_not_enabled", "No second factor is set up for this account.")
    service.require_step_up(parent, claims)
    codes = service.new_recovery_codes(parent)
    db.session.commit()
    _audit("mfa_recovery_codes_replaced", parent.id)
    return {"recovery_codes": codes}


@bp.delete("/totp")
@bp.auth_required(bearer)
@bp.output({}, status_code=204)
@bp.doc(
    summary="Remove the authenticator app and recovery codes (needs a recent second-factor check)", responses=[401, 403]
)
def remove():
    claims = current_claims()
    parent = families.require_parent(claims)
    service.require_step_up(parent, claims)
    service.remove(parent)
    db.session.commit()
    _audit("mfa_removed", parent.id)
    return ""
