"""Request and response schemas for the parents' usage view."""

from __future__ import annotations

from apiflask import Schema
from apiflask.fields import Date, DateTime, Dict, Integer, List, Nested, String
from apiflask.validators import Range


class UsageQueryIn(Schema):
    days = Integer(load_default=7, validate=Range(min=0, max=90), metadata={"description": "Days of history."})


class UsageRowOut(Schema):
    family_id = String(required=True)
    scope = String(required=True, metadata={"description": "family (the shared pool), child or user."})
    subject = String(required=True, metadata={"description": "The account id; empty for the family pool."})
    day = Date(required=True)
    stories_used = Integer(required=True)
    grants = Integer(required=True)
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
