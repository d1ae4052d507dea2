"""Request schemas for e-mail verification."""

from __future__ import annotations

from apiflask import Schema
from apiflask.fields import String
from apiflask.validators import Length, Regexp


class VerifyIn(Schema):
    token = String(required=True, validate=[Length(min=1, max=256), Regexp(r"^[A-Za-z0-9_\-]+$")])
