"""Request and response schemas for privacy requests."""

from __future__ import annotations

from apiflask import Schema
from apiflask.fields import Boolean, DateTime, Dict, String
from apiflask.validators import Length


class DeletionIn(Schema):
    password = String(required=True, validate=Length(min=1, max=1024), metadata={"description": "Re-entered."})


class DeletionOut(Schema):
    requested_at = DateTime(required=True)
    purge_after = DateTime(required=True, metadata={"description": "Sign in and cancel before this time."})
    family_deleted = Boolean(required=True, metadata={"description": "True when this is the family's last parent."})


class ExportOut(Schema):
    exported_at = DateTime(required=True)
    account = Dict(required=True)
    family = Dict(required=True)
