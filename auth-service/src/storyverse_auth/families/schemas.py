"""Request and response schemas for families, child profiles, consent and child/device sign-in."""

from __future__ import annotations

from apiflask import Schema
from apiflask.fields import UUID, Boolean, DateTime, Integer, List, Nested, String
from apiflask.validators import Length, OneOf, Range, Regexp
from marshmallow import ValidationError, validates_schema

from ..children import controls
from ..schemas import _email_field, _password_field

_PRINTABLE = Regexp(r"^[^\x00-\x1f\x7f]*$", error="Control characters are not allowed.")
_USERNAME = Regexp(
    r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", error="Letters, digits, '_', '.' and '-'; starting with a letter or digit."
)
_PIN = Regexp(r"^[0-9]{4,8}$", error="4 to 8 digits.")
_TOKEN = Regexp(r"^[A-Za-z0-9_.\-]+$", error="Not a token.")


def _window(value: str) -> None:
    if controls.parse_window(value) is None:
        raise ValidationError('Not a window "HH:MM-HH:MM" (start != end; may cross midnight; "00:00-24:00" = all day).')


def _features(**kw) -> List:
    return List(
        String(validate=OneOf(controls.FEATURES)),
        validate=Length(max=len(controls.FEATURES)),
        metadata={"description": "Generation kinds allowed (subset of text, image, audio)."},
        **kw,
    )


def _username(**kw) -> String:
    return String(validate=[Length(min=2, max=32), _USERNAME], metadata={"example": "robin"}, **kw)


class ControlsIn(Schema):
    max_content_rating = String(validate=OneOf(controls.CONTENT_RATINGS))
    daily_story_limit = Integer(
        validate=Range(min=0, max=max(controls.TIER_DAILY_STORY_LIMIT.values())),
        metadata={"description": "At or below the family tier's limit (basic 5, premium 20)."},
    )
    allowed_hours = String(
        validate=[Length(max=11), _window],
        metadata={"description": "Local window in the family's time zone.", "example": "07:00-19:30"},
    )
    features = _features()


class ControlsOut(Schema):
    max_content_rating = String(required=True)
    daily_story_limit = Integer(required=True)
    allowed_hours = String(required=True)
    features = List(String(), required=True)


class ChildCreateIn(Schema):
    display_name = String(required=True, validate=[Length(min=1, max=100), _PRINTABLE])
    username = _username(required=True)
    birth_year = Integer(required=True, validate=Range(min=1990, max=2100))
    pin = String(validate=_PIN, metadata={"description": "Optional here; set later with PUT …/pin."})
    controls = Nested(ControlsIn)


class ChildPatchIn(Schema):
    display_name = String(validate=[Length(min=1, max=100), _PRINTABLE])
    username = _username()
    birth_year = Integer(validate=Range(min=1990, max=2100))
    current_password = String(
        validate=Length(min=1, max=1024),
        metadata={"description": "The parent's password; required with (and only with) a birth-year change."},
    )
    controls = Nested(ControlsIn)

    @validates_schema
    def _reauth_for_birth_year(self, data: dict, **_kw) -> None:
        if "birth_year" in data and "current_password" not in data:
            raise ValidationError("Changing the birth year needs the parent's current password.", "current_password")
        if "current_password" in data and "birth_year" not in data:
            raise ValidationError("Only a birth-year change takes a password.", "current_password")


class PinIn(Schema):
    pin = String(required=True, validate=_PIN)


class ConsentIn(Schema):
    policy_version = String(required=True, validate=[Length(min=1, max=32), _TOKEN], metadata={"example": "2026-04-22"})
    agreed = List(
        String(validate=OneOf(("profile", "generation", "third_party_disclosure"))),
        required=True,
        validate=Length(min=1, max=3),
        metadata={"description": "What the parent agreed to; must include 'profile' (collection of the profile)."},
    )
    password = _password_field("The parent's password (re-authentication for the consent record).", new=False)

    @validates_schema
    def _profile_required(self, data: dict, **_kw) -> None:
        if "profile" not in data.get("agreed", []):
            raise ValidationError("Consent must include 'profile'.", "agreed")


class ConsentOut(Schema):
    consented_at = DateTime(required=True)
    policy_version = String(required=True)
    agreed = List(String(), required=True)
    method = String(required=True)


class ChildOut(Schema):
    id = String(required=True)
    display_name = String(required=True)
    username = String(required=True)
    birth_year = Integer(allow_none=True)
    age_band = String(required=True)
    content_rating = String(required=True, metadata={"description": "Effective: the strictest of age and parent."})
    active = Boolean(required=True, metadata={"description": "False until a parent records consent."})
    has_pin = Boolean(required=True)
    consent = Nested(ConsentOut, allow_none=True)
    controls = Nested(ControlsOut, required=True)
    created_at = DateTime(required=True)


class CallerTokenOut(Schema):
    access_token = String(required=True)
    token_type = String(required=True)
    expires_in = Integer(required=True)


class ChildCreatedOut(ChildOut):
    caller_token = Nested(
        CallerTokenOut,
        required=True,
        metadata={
            "description": "A fresh access token for the caller's session whose `children` claim names the "
            "new child (the refresh token is unchanged)."
        },
    )


class ChildItemOut(ChildOut):
    """A list item (its own component: apispec must not register ChildOut twice)."""


class ChildrenOut(Schema):
    children = List(Nested(ChildItemOut), required=True)


class MemberOut(Schema):
    id = String(required=True)
    display_name = String(required=True)
    email = String(allow_none=True)


class ChildSummaryOut(Schema):
    id = String(required=True)
    display_name = String(required=True)
    username = String(required=True)
    active = Boolean(required=True)


class FamilyDetailOut(Schema):
    id = String(required=True)
    name = String(required=True)
    tier = String(required=True)
    time_zone = String(required=True)
    family_code = String(required=True, metadata={"description": "Children sign in with it (with username + PIN)."})
    parents = List(Nested(MemberOut), required=True)
    children = List(Nested(ChildSummaryOut), required=True)


class InviteIn(Schema):
    email = _email_field()


class JoinIn(Schema):
    token = String(required=True, validate=[Length(min=1, max=256), _TOKEN])
    password = _password_field("At least 15 characters, up to 256; no composition rules; common passwords refused.")
    display_name = String(required=True, validate=[Length(min=1, max=100), _PRINTABLE])


class ChildLoginIn(Schema):
    family_code = String(
        required=True,
        validate=[Length(min=1, max=32), Regexp(r"^[A-Za-z0-9 -]+$", error="Letters, digits, spaces and '-'.")],
        metadata={"example": "7KQ2M-9XH4T"},
    )
    username = _username(required=True)
    pin = String(required=True, validate=_PIN)


class DeviceCodeIn(Schema):
    client_name = String(validate=[Length(min=1, max=64), _PRINTABLE], metadata={"example": "Living-room tablet"})


class DeviceCodeOut(Schema):
    device_code = String(required=True)
    user_code = String(required=True)
    verification_uri = String(required=True)
    verification_uri_complete = String(required=True)
    expires_in = Integer(required=True)
    interval = Integer(required=True)


class DeviceApproveIn(Schema):
    user_code = String(required=True, validate=[Length(min=1, max=16), Regexp(r"^[A-Za-z -]+$")])
    child_id = UUID(required=True)


class DeviceDenyIn(Schema):
    user_code = String(required=True, validate=[Length(min=1, max=16), Regexp(r"^[A-Za-z -]+$")])


class DeviceTokenIn(Schema):
    device_code = String(required=True, validate=[Length(min=1, max=128), _TOKEN])
    grant_type = String(
        load_default="urn:ietf:params:oauth:grant-type:device_code",
        validate=OneOf(["urn:ietf:params:oauth:grant-type:device_code"]),
    )
