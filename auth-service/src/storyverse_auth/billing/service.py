"""Plan changes. Add to the session; never commit.

The provider is the source of truth for what a family pays for: a parent's request only hands back where to pay
(or cancel), and ``families.tier`` changes when a signed ``subscription.activated`` / ``subscription.canceled``
event arrives. Tokens read the tier from the database at every refresh (sessions/service.py), so the new plan is in
the family's tokens at their next refresh; sv-quota keeps one counter per family and local day whatever the plan, so
**on the day of a change the stories already made count against the new plan's limit** (basic → premium after 5
stories leaves 15; premium → basic after 7 leaves none until the family's midnight).
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from flask import current_app
from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from storyverse_contracts import tiers

from ..children import controls
from ..clock import now
from ..extensions import db
from ..models import Account, Family
from . import errors
from .models import BillingEvent, Subscription

PAID_PLANS = (tiers.PREMIUM,)
ACTIVATED, CANCELED = "subscription.activated", "subscription.canceled"
EVENT_TYPES = (ACTIVATED, CANCELED)
# Overridable in the app config (same names); the defaults are the web app's billing pages.
CHECKOUT_URL = os.environ.get(
    "BILLING_CHECKOUT_URL", "http://localhost:3000/billing/checkout?family={family_id}&plan={plan}"
)
MANAGE_URL = os.environ.get("BILLING_MANAGE_URL", "http://localhost:3000/billing/manage?family={family_id}")
WEBHOOK_SECRETS = os.environ.get("BILLING_WEBHOOK_SECRETS", "")  # comma-separated: current first, then previous
WEBHOOK_TOLERANCE = int(os.environ.get("BILLING_WEBHOOK_TOLERANCE", "300"))


def _setting(name: str, default: Any) -> Any:
    return current_app.config.get(name, default)


def webhook_secrets() -> list[str]:
    return [s.strip() for s in str(_setting("BILLING_WEBHOOK_SECRETS", WEBHOOK_SECRETS)).split(",") if s.strip()]


def webhook_tolerance() -> int:
    return int(_setting("BILLING_WEBHOOK_TOLERANCE", WEBHOOK_TOLERANCE))


def plan_view(family: Family) -> dict[str, Any]:
    sub = db.session.get(Subscription, family.id)
    return {
        "plan": family.tier,
        "daily_story_limit": controls.tier_limit(family.tier),
        "subscription": None if sub is None else {"plan": sub.plan, "status": sub.status, "updated_at": sub.updated_at},
        "plans": [{"plan": t, "daily_story_limit": n} for t, n in controls.TIER_DAILY_STORY_LIMIT.items()],
    }


def request_change(parent: Account, plan: str) -> dict[str, Any]:
    """Where the parent goes to pay for ``plan`` (or to cancel the paid one). Nothing changes until the provider's
    event arrives."""
    family = parent.family
    if plan == family.tier:
        raise errors.plan_unchanged(plan)
    if plan in PAID_PLANS:
        url = str(_setting("BILLING_CHECKOUT_URL", CHECKOUT_URL)).format(family_id=family.id, plan=plan)
        status = "checkout_required"
    else:
        url = str(_setting("BILLING_MANAGE_URL", MANAGE_URL)).format(family_id=family.id)
        status = "cancellation_required"
    return {"status": status, "plan": family.tier, "requested_plan": plan, "url": url}


@dataclass(frozen=True)
class Event:
    event_id: str
    event_type: str
    created: int
    family_id: uuid.UUID
    subscription_id: str
    plan: str | None


def record(event: Event) -> bool:
    """Enter the event id in the ledger; False if it was already there (a redelivery or a replay)."""
    row = db.session.execute(
        insert(BillingEvent)
        .values(
            event_id=event.event_id,
            event_type=event.event_type,
            family_id=event.family_id,
            outcome="received",
            received_at=now(),
        )
        .on_conflict_do_nothing(index_elements=["event_id"])
        .returning(BillingEvent.event_id)
    ).first()
    return row is not None


def apply(event: Event) -> str:
    """Apply a recorded event: "applied", "stale" (older than the last one applied) or "ignored"."""
    family = db.session.scalar(select(Family).where(Family.id == event.family_id).with_for_update())
    outcome = "ignored" if family is None or event.event_type not in EVENT_TYPES else _apply(family, event)
    db.session.execute(
        update(BillingEvent)
        .where(BillingEvent.event_id == event.event_id)
        .values(outcome=outcome)
        .execution_options(synchronize_session=False)
    )
    return outcome


def _apply(family: Family, event: Event) -> str:
    created = datetime.fromtimestamp(event.created, tz=UTC)
    sub = db.session.get(Subscription, family.id)
    if sub is not None and created < sub.last_event_at:
        return "stale"
    if event.event_type == CANCELED:
        if sub is None or sub.provider_subscription_id != event.subscription_id:
            return "ignored"  # not the subscription the family is on
        sub.status, sub.last_event_at, sub.updated_at = "canceled", created, now()
        family.tier = tiers.DEFAULT_TIER
        return "applied"
    if event.plan not in PAID_PLANS:
        return "ignored"
    if sub is None:
        sub = Subscription(family_id=family.id)
        db.session.add(sub)
    sub.provider_subscription_id, sub.plan, sub.status = event.subscription_id, event.plan, "active"
    sub.last_event_at, sub.updated_at = created, now()
    family.tier = event.plan
    return "applied"
