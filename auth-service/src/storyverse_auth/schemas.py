"""Request and response schemas (apiflask/marshmallow): validation and the OpenAPI document come from here."""

from __future__ import annotations

from functools import cache
from zoneinfo import available_timezones

from apiflask import Schema
from apiflask.fields import Boolean, DateTime, Email, Integer, List, Nested, String
from apiflask.validators import Length, OneOf, Regexp
from marshmallow import ValidationError

_PRINTABLE = Regexp(r"^[^\x00-\x1f\x7f]*$", error="Control characters are not allowed.")
_TOKEN = Regexp(r"^[A-Za-z0-9_.\-]+$", error="Not a token.")


@cache
def _zones() -> frozenset[str]:
    return frozenset(available_timezones())


def _time_zone(value: str) -> None:
    if value not in _zones():
        raise ValidationError("Not an IANA time zone name.")


def _email_field(**kw) -> Email:
    return Email(
        required=True, validate=[Length(max=254), _PRINTABLE], metadata={"example": "parent@example.com"}, **kw
    )


def _password_field(description: str, new: bool = True) -> String:
    # The service applies the full policy (configurable length, blocklist) and names the rule that failed;
    # the schema documents the default bounds so clients and generated tests see them.
    bounds = Length(min=15, max=256) if new else Length(min=1, max=1024)
    return String(required=True, validate=bounds, metadata={"description": description})


class RegisterIn(Schema):
    email = _email_field()
    password = _password_field("At least 15 characters, up to 256; no composition rules; common passwords refused.")
    display_name = String(required=True, validate=[Length(min=1, max=100), _PRINTABLE])
    family_name = String(validate=[Length(min=1, max=100), _PRINTABLE])
    time_zone = String(load_default="UTC", validate=[Length(max=64), _time_zone], metadata={"example": "Europe/Paris"})


class LoginIn(Schema):
    email = _email_field()
    password = _password_field("The account password.", new=False)


class RefreshIn(Schema):
    refresh_token = String(required=True, validate=Length(min=1, max=512))


class LogoutIn(Schema):
    scope = String(load_default="local", validate=OneOf(["local", "others", "global"]))


class ForgotIn(Schema):
    email = _email_field()


class ResetIn(Schema):
    token = String(required=True, validate=[Length(min=1, max=256), _TOKEN])
    new_password = _password_field("The new password (same rules as registration).")


class ChangeIn(Schema):
    current_password = _password_field("The current password.", new=False)
    new_password = _password_field("The new password (same rules as registration).")


class AcceptedOut(Schema):
    status = String(required=True)
    detail = String(required=True)


class TokenOut(Schema):
    access_token = String(required=True)
    token_type = String(required=True, metadata={"example": "Bearer"})
    expires_in = Integer(required=True)
    refresh_token = String(required=True)
    session_id = String(required=True)


class FamilyOut(Schema):
    id = String(required=True)
    name = String(required=True)
    tier = String(required=True)
    time_zone = String(required=True)


class MeOut(Schema):
    id = String(required=True)
    email = String(allow_none=True)
    role = String(required=True)
    display_name = String(required=True)
    family = Nested(FamilyOut, required=True)


class SessionOut(Schema):
    id = String(required=True)
    created_at = DateTime(required=True)
    last_used_at = DateTime(required=True)
    expires_at = DateTime(required=True)
    user_agent = String(allow_none=True)
    ip = String(allow_none=True)
    current = Boolean(required=True)


class SessionsOut(Schema):
    sessions = List(Nested(SessionOut), required=True)


class StatusOut(Schema):
    status = String(required=True)
    checks = String(metadata={"description": "Comma-separated failing dependencies, if any."})
