"""Child sign-in without e-mail (family code + username + PIN) and the RFC 8628 device authorization grant."""

from __future__ import annotations

import logging
from urllib.parse import urlencode

from apiflask import APIBlueprint
from flask import request

from .. import metrics
from ..auth.bearer import bearer, current_claims
from ..errors import APIError
from ..extensions import db
from ..families import service as families
from ..families.schemas import ChildLoginIn, DeviceApproveIn, DeviceCodeIn, DeviceCodeOut, DeviceDenyIn, DeviceTokenIn
from ..schemas import TokenOut
from ..tokens import responses as token_responses
from . import service as devices

bp = APIBlueprint("devices", __name__, url_prefix="/api/auth", tag="Child sign-in")

log = logging.getLogger(__name__)


def _ip() -> str:
    return request.remote_addr or "unknown"


@bp.post("/child/login")
@bp.input(ChildLoginIn, arg_name="body")
@bp.output(TokenOut)
@bp.doc(
    summary="Child sign-in with the family code, username and PIN (throttled like passwords)",
    responses=[401, 403, 422, 429],
)
def child_login(body: dict):
    try:
        child = devices.login_child(body["family_code"], body["username"], body["pin"], _ip())
    except APIError as exc:
        if exc.code != "too_many_attempts":  # throttle.check counted that one
            metrics.inc("sv_auth_logins_total", outcome="failure")
        raise
    response = token_responses.new_session(child)
    db.session.commit()
    metrics.inc("sv_auth_logins_total", outcome="success")
    log.info("child login", extra={"event": "child_login", "account_id": str(child.id), "outcome": "success"})
    return response


@bp.post("/device/code")
@bp.input(DeviceCodeIn, arg_name="body")
@bp.output(DeviceCodeOut)
@bp.doc(summary="Start a device sign-in (RFC 8628 §3.1-3.2): show user_code, poll /device/token", responses=[422])
def device_code(body: dict):
    grant = devices.start(body.get("client_name"))
    db.session.commit()
    return {
        "device_code": grant.device_code,
        "user_code": grant.user_code,
        "verification_uri": grant.verification_uri,
        "verification_uri_complete": f"{grant.verification_uri}?{urlencode({'user_code': grant.user_code})}",
        "expires_in": grant.expires_in,
        "interval": grant.interval,
    }


@bp.post("/device/approve")
@bp.auth_required(bearer)
@bp.input(DeviceApproveIn, arg_name="body")
@bp.output({}, status_code=204)
@bp.doc(
    summary="A parent approves a device's user_code for one of their (consented) children",
    responses=[400, 401, 403, 404, 409, 422, 429],
)
def device_approve(body: dict):
    parent = families.require_parent(current_claims())
    devices.approve(parent, body["user_code"], body["child_id"], _ip())
    db.session.commit()
    log.info("device approve", extra={"event": "device_approve", "account_id": str(parent.id)})
    return ""


@bp.post("/device/deny")
@bp.auth_required(bearer)
@bp.input(DeviceDenyIn, arg_name="body")
@bp.output({}, status_code=204)
@bp.doc(summary="A parent denies a device's user_code", responses=[400, 401, 403, 422, 429])
def device_deny(body: dict):
    parent = families.require_parent(current_claims())
    devices.deny(parent, body["user_code"], _ip())
    db.session.commit()
    log.info("device deny", extra={"event": "device_deny", "account_id": str(parent.id)})
    return ""


@bp.post("/device/token")
@bp.input(DeviceTokenIn, arg_name="body")
@bp.output(TokenOut)
@bp.doc(
    summary="Poll for the child's tokens (RFC 8628 §3.4-3.5). 400 `code`: authorization_pending, slow_down, "
    "access_denied, expired_token, invalid_grant",
    responses=[400, 422],
)
def device_token(body: dict):
    result = devices.poll(body["device_code"])
    if result.error is not None:
        db.session.commit()  # the poll time (and a slowed interval) must stick
        raise result.error
    assert result.child is not None
    response = token_responses.new_session(result.child)
    db.session.commit()
    log.info("device token", extra={"event": "device_token", "account_id": str(result.child.id)})
    return response
