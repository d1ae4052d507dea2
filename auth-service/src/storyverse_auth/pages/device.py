"""The RFC 8628 device page (``DEVICE_VERIFICATION_URI``): the parent enters (or finds prefilled, from
``verification_uri_complete``) the code the device shows, picks the child the device is for, and approves or denies.
Same rules as ``POST /api/auth/device/approve|deny`` (services/devices.py): consented children of the parent's own
family only; user codes are throttled per parent and IP."""

from __future__ import annotations

import logging
import uuid

from flask import g, request

from ..children import service as children
from ..devices import service as devices
from ..errors import APIError
from ..extensions import db
from . import bp, session, views

log = logging.getLogger(__name__)
MESSAGES = {
    "invalid_user_code": "That code is not valid or has expired. Check the code on the device.",
    "child_not_found": "Choose one of your children.",
    "consent_required": "This child's profile is not active yet: give consent first.",
    "too_many_attempts": "Too many attempts. Wait a few minutes and try again.",
}


def _device_page(parent, status: int = 200, message: str | None = None, user_code: str = ""):
    kids = [c for c in children.list_children(parent.family_id) if c.consented_at is not None]
    return views.page("pages/device.html", status, children=kids, user_code=user_code, message=message)


@bp.get("/device")
def device_page():
    parent = views.signed_in()
    if parent is None:
        return views.to_sign_in()
    code = request.args.get("user_code", "")[:32]
    return _device_page(parent, user_code=code)


@bp.post("/device")
def device_submit():
    parent = views.signed_in()
    if parent is None:
        return views.csrf_refused()
    if not views.csrf_ok(session.csrf_token(g.sv_page_token)):
        return views.csrf_refused()
    code, action = request.form.get("user_code", "")[:32], request.form.get("action")
    if not devices.normalise_code(code):
        return _device_page(parent, 400, "Enter the code shown on the device.", code)
    try:
        child = _decide(parent, code, action)
    except APIError as exc:
        db.session.commit()  # a wrong code counts toward the back-off
        return _device_page(parent, exc.status_code, MESSAGES.get(exc.code, exc.message or "Try again."), code)
    db.session.commit()
    log.info("device " + action, extra={"event": f"device_{action}", "account_id": str(parent.id)})
    return views.page("pages/device_done.html", approved=action == "approve", child=child)


def _decide(parent, code: str, action: str | None):
    """Approve (for the chosen child) or deny; the child approved for, or None on deny."""
    if action == "deny":
        devices.deny(parent, code, request.remote_addr or "unknown")
        return None
    if action != "approve":
        raise APIError(400, "bad_request", "Choose Approve or Deny.")
    try:
        child_id = uuid.UUID(request.form.get("child_id", ""))
    except ValueError:
        raise APIError(400, "child_not_found", "Choose one of your children.") from None
    devices.approve(parent, code, child_id, request.remote_addr or "unknown")
    return children.get_child(parent, child_id)
