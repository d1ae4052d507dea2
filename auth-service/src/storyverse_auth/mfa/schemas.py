"""Request and response schemas for parent MFA."""

from __future__ import annotations

from apiflask import Schema
from apiflask.fields import Boolean, Integer, List, Nested, String
from apiflask.validators import Length, Regexp
from marshmallow import ValidationError, validates_schema

_CODE = Regexp(r"^[0-9]{6}$", error="6 digits.")
_RECOVERY = Regexp(r"^[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}$", error="A recovery code: xxxx-xxxx-xxxx.")


class MfaStatusOut(Schema):
    totp = Boolean(required=True, metadata={"description": "A confirmed authenticator app is set up."})
    recovery_codes_left = Integer(required=True)


class EnrolIn(Schema):
    password = String(required=True, validate=Length(min=1, max=1024), metadata={"description": "Re-entered."})


class EnrolOut(Schema):
    secret = String(required=True, metadata={"description": "Base32 secret, for typing into the app."})
    otpauth_uri = String(required=True, metadata={"description": "otpauth://totp/... for the app (QR content)."})
    qr_svg_data_uri = String(required=True, metadata={"description": "The URI as a QR code (SVG data URI)."})


class CodeIn(Schema):
    code = String(required=True, validate=_CODE)


class VerifyIn(Schema):
    code = String(validate=_CODE)
    recovery_code = String(validate=_RECOVERY)

    @validates_schema
    def _one(self, data: dict, **_: object) -> None:
        if ("code" in data) == ("recovery_code" in data):
            raise ValidationError("Send exactly one of code and recovery_code.")


class _AccessToken(Schema):
    access_token = String(required=True)
    token_type = String(required=True)
    expires_in = Integer(required=True)


class RecoveryCodesOut(Schema):
    recovery_codes = List(String(), required=True, metadata={"description": "Shown once; each works once."})
    caller_token = Nested(_AccessToken, metadata={"description": "An access token whose amr shows the check."})


class VerifiedOut(Schema):
    method = String(required=True, metadata={"description": "otp or recovery"})
    recovery_codes_left = Integer(required=True)
    caller_token = Nested(_AccessToken, required=True)
