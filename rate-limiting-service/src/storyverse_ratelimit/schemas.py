"""Request and response schemas: the parents' usage view and the admin API."""

from __future__ import annotations

from apiflask import Schema
from apiflask.fields import UUID, Date, DateTime, Dict, Integer, List, Nested, String
from apiflask.validators import Length, OneOf, Range
from marshmallow import ValidationError, validates_schema

MAX_EXPORT_DAYS = 366
OCCASION_DATE = r"^(\d{4}-)?\d{2}-\d{2}$"


class UsageQueryIn(Schema):
    days = Integer(load_default=7, validate=Range(min=0, max=90), metadata={"description": "Days of history."})


class UsageRowOut(Schema):
    family_id = String(required=True)
    scope = String(required=True, metadata={"description": "family (the shared pool), child or user."})
    subject = String(required=True, metadata={"description": "The account id; empty for the family pool."})
    day = Date(required=True)
    stories_used = Integer(required=True)
    grants = Integer(required=True, metadata={"description": "Extra stories granted that day (occasions included)."})
    requests = Dict(keys=String(), values=Integer(), allow_none=True)
    synced_at = DateTime(required=True)


class PoolOut(Schema):
    limit = Integer(required=True)
    used = Integer(required=True)
    granted = Integer(required=True)
    in_flight = Integer(required=True)
    left = Integer(required=True)


class ChildUsageOut(Schema):
    id = String(required=True)
    display_name = String(required=True)
    username = String(allow_none=True)
    daily_story_limit = Integer(required=True)
    used = Integer(required=True)
    granted = Integer(required=True)
    in_flight = Integer(required=True)
    left = Integer(required=True, metadata={"description": "Stories this child can still create today."})
    message = String(required=True, metadata={"example": "2 stories left tonight"})


class FamilyUsageOut(Schema):
    family_id = String(required=True)
    tier = String(required=True)
    time_zone = String(required=True)
    day = Date(required=True, metadata={"description": "Today in the family's time zone."})
    resets_at = DateTime(required=True, metadata={"description": "The family's next local midnight."})
    family = Nested(PoolOut, required=True)
    children = List(Nested(ChildUsageOut), required=True)
    history = List(Nested(UsageRowOut), required=True)


class ExportQueryIn(Schema):
    from_ = Date(data_key="from", metadata={"description": "First day (family-local), default 30 days before `to`."})
    to = Date(metadata={"description": "Last day (family-local, inclusive), default today (UTC)."})
    format = String(load_default="json", validate=OneOf(["json", "csv"]))
    family_id = UUID(metadata={"description": "Only this family."})

    @validates_schema
    def _range(self, data: dict, **_: object) -> None:
        start, end = data.get("from_"), data.get("to")
        if start and end and (start > end or (end - start).days >= MAX_EXPORT_DAYS):
            raise ValidationError(f"`from` must not be after `to`, and the range is at most {MAX_EXPORT_DAYS} days.")


class ExportOut(Schema):
    from_ = Date(data_key="from", required=True)
    to = Date(required=True)
    rows = List(Nested(UsageRowOut), required=True)


class GrantIn(Schema):
    family_id = UUID(metadata={"description": "Grant to the family's shared pool (give this or account_id)."})
    account_id = UUID(metadata={"description": "Grant to one account (a child: its own limit and the family pool)."})
    stories = Integer(required=True, validate=Range(min=1, max=100))
    reason = String(validate=Length(max=200))

    @validates_schema
    def _one_target(self, data: dict, **_: object) -> None:
        if ("family_id" in data) == ("account_id" in data):
            raise ValidationError("Give exactly one of family_id and account_id.")


class GrantCounterOut(Schema):
    scope = String(required=True)
    subject = String(required=True)
    grant = Integer(required=True, metadata={"description": "Total extra stories granted on this counter today."})


class GrantOut(Schema):
    family_id = String(required=True)
    day = Date(required=True)
    stories = Integer(required=True)
    counters = List(Nested(GrantCounterOut), required=True)


class BlockOut(Schema):
    id = String(required=True, metadata={"description": "The block's id (for DELETE .../blocks/{id})."})
    kind = String(required=True, metadata={"description": "ip or account."})
    subject = String(required=True)
    reason = String(required=True, metadata={"description": "strikes or credential_stuffing."})
    level = Integer(required=True)
    until_ms = Integer(required=True)
    remaining_s = Integer(required=True)
    started_ms = Integer(required=True)


class BlocksOut(Schema):
    blocks = List(Nested(BlockOut), required=True)


class UnblockOut(Schema):
    id = String(required=True)
    lifted = Integer(required=True, metadata={"description": "1 when a live block was lifted, 0 when none was set."})


class OccasionIn(Schema):
    extra = Integer(required=True, validate=Range(min=1, max=100), metadata={"description": "Stories added."})


class OccasionOut(Schema):
    date = String(required=True, metadata={"example": "12-24", "pattern": OCCASION_DATE})
    extra = Integer(required=True)


class OccasionsOut(Schema):
    occasions = List(Nested(OccasionOut), required=True)


class PlanOut(Schema):
    tier = String(required=True)
    daily = Integer(required=True, metadata={"description": "Stories per family-local day."})
    rate_burst = Integer(required=True, metadata={"description": "Extra burst on per-user rate limits."})


class PlansOut(Schema):
    plans = List(Nested(PlanOut), required=True)


class StatusOut(Schema):
    status = String(required=True)
