"""Request and response schemas for plans and the billing webhook."""

from __future__ import annotations

from apiflask import Schema
from apiflask.fields import UUID, DateTime, Integer, List, Nested, String
from apiflask.validators import Length, OneOf, Range, Regexp

from ..children import controls

_ID = Regexp(r"^[A-Za-z0-9_\-]+$", error="Letters, digits, '_' and '-'.")
_PLANS = OneOf(tuple(controls.TIER_DAILY_STORY_LIMIT))


class PlanChangeIn(Schema):
    plan = String(required=True, validate=_PLANS, metadata={"example": "premium"})


class PlanChangeOut(Schema):
    status = String(
        required=True,
        metadata={"description": "`checkout_required` (pay at `url`) or `cancellation_required` (cancel at `url`)."},
    )
    plan = String(required=True, metadata={"description": "The plan the family is on now."})
    requested_plan = String(required=True)
    url = String(required=True, metadata={"description": "The billing provider's page for this change."})


class _PlanLimit(Schema):
    plan = String(required=True)
    daily_story_limit = Integer(required=True)


class _Subscription(Schema):
    plan = String(required=True)
    status = String(required=True, metadata={"description": "`active` or `canceled`, as the provider last said."})
    updated_at = DateTime(required=True)


class PlanOut(Schema):
    plan = String(required=True)
    daily_story_limit = Integer(required=True, metadata={"description": "The family's stories per local day."})
    subscription = Nested(_Subscription, allow_none=True, required=True)
    plans = List(Nested(_PlanLimit), required=True)


class _EventData(Schema):
    family_id = UUID(required=True)
    subscription_id = String(required=True, validate=[Length(min=1, max=128), _ID])
    plan = String(validate=_PLANS)


class WebhookEventIn(Schema):
    id = String(required=True, validate=[Length(min=1, max=128), _ID])
    type = String(required=True, validate=Length(min=1, max=64))
    created = Integer(required=True, validate=Range(min=0, max=2**40))
    data = Nested(_EventData, required=True)


class WebhookOut(Schema):
    status = String(required=True, metadata={"description": "applied, duplicate, stale or ignored."})
