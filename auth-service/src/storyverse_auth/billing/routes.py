"""The family's plan (read, ask to change) and the billing provider's webhook."""

from __future__ import annotations

import logging
import uuid

from apiflask import APIBlueprint
from flask import request

from ..auth.bearer import bearer, current_claims
from ..clock import now_ts
from ..extensions import db
from ..families import service as families
from ..mfa import service as mfa
from . import errors, service, signature
from .schemas import PlanChangeIn, PlanChangeOut, PlanOut, WebhookEventIn, WebhookOut

bp = APIBlueprint("billing", __name__, url_prefix="/api/auth", tag="Plans")

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "Billing-Signature"


@bp.get("/family/plan")
@bp.auth_required(bearer)
@bp.output(PlanOut)
@bp.doc(summary="The family's plan, its daily story limit and the subscription (parents only)", responses=[401, 403])
def get_plan():
    parent = families.require_parent(current_claims())
    return service.plan_view(parent.family)


@bp.post("/family/plan")
@bp.auth_required(bearer)
@bp.input(PlanChangeIn, arg_name="body")
@bp.output(PlanChangeOut, status_code=202)
@bp.doc(
    summary="Ask to change the family's plan: answers the billing provider's page; the plan changes when the "
    "provider confirms (webhook). Needs a recent second factor when the parent has one enrolled",
    responses=[401, 403, 409, 422],
)
def change_plan(body: dict):
    claims = current_claims()
    parent = families.require_parent(claims)
    mfa.require_step_up(parent, claims)
    out = service.request_change(parent, body["plan"])
    log.info("plan change requested", extra={"event": "plan_change_requested", "account_id": str(parent.id)})
    return out


def _verified_body() -> None:
    secrets = service.webhook_secrets()
    if not secrets:
        raise errors.webhook_unconfigured()
    header = request.headers.get(SIGNATURE_HEADER, "")
    verdict = signature.verify(header, request.get_data(cache=True), secrets, now_ts(), service.webhook_tolerance())
    if not verdict.ok:
        log.warning("billing webhook refused", extra={"event": "billing_webhook_refused", "reason": verdict.reason})
        raise errors.invalid_signature(verdict.reason)


@bp.post("/billing/webhook")
@bp.input(WebhookEventIn, arg_name="body")
@bp.output(WebhookOut)
@bp.doc(
    summary="The billing provider's events (`subscription.activated`, `subscription.canceled`), signed with "
    "`Billing-Signature: t=<unix>,v1=<HMAC-SHA256 of '<t>.<body>'>`; each event id is applied once",
    responses=[400, 422, 503],
)
def webhook(body: dict):
    _verified_body()
    data = body["data"]
    event = service.Event(
        body["id"],
        body["type"],
        body["created"],
        uuid.UUID(str(data["family_id"])),
        data["subscription_id"],
        data.get("plan"),
    )
    outcome = service.apply(event) if service.record(event) else "duplicate"
    db.session.commit()
    log.info(
        "billing event",
        extra={
            "event": "billing_event",
            "outcome": outcome,
            "subject": str(event.family_id),
            "reason": event.event_type,
        },
    )
    return {"status": outcome}
