"""Request and response schemas for the admin endpoints (usage export, grants, abuse blocks)."""

from __future__ import annotations

from apiflask import Schema
from apiflask.fields import UUID, Date, Integer, List, Nested, String
from apiflask.validators import Length, OneOf, Range
from marshmallow import ValidationError, validates_schema

from ..usage.schemas import UsageRowOut

MAX_EXPORT_DAYS = 366


class UsageQuery(Schema):
    from_ = Date(data_key="from", metadata={"description": "First day (family-local), default 30 days before `to`."})
    to = Date(metadata={"description": "Last day (family-local, inclusive), default today (UTC)."})
    format = String(load_default="json", validate=OneOf(["json", "csv"]))
    family_id = UUID(metadata={"description": "Only this family."})

    @validates_schema
    def _range(self, data: dict, **_: object) -> None:
        start, end = data.get("from_"), data.get("to")
        if start and end and (start > end or (end - start).days >= MAX_EXPORT_DAYS):
            raise ValidationError(f"`from` must not be after `to`, and the range is at most {MAX_EXPORT_DAYS} days.")


class UsageExportOut(Schema):
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
    key = String(required=True)
    kind = String(required=True, metadata={"description": "ip or account."})
    subject = String(required=True)
    reason = String(required=True, metadata={"description": "strikes or credential_stuffing."})
    level = Integer(required=True)
    until_ms = Integer(required=True)
    remaining_s = Integer(required=True)
    started_ms = Integer(required=True)


class BlocksOut(Schema):
    blocks = List(Nested(BlockOut), required=True)
