"""Request and response schemas for API keys."""

from __future__ import annotations

from apiflask import Schema
from apiflask.fields import UUID, DateTime, Integer, List, Nested, String
from apiflask.validators import Length, OneOf, Regexp
from storyverse_contracts.tiers import FAMILY_PLAN

from .service import DEFAULT_PLANS, SCOPES

_PRINTABLE = Regexp(r"^[^\x00-\x1f\x7f]*$", error="Control characters are not allowed.")
_PLAN = Regexp(r"^[a-z0-9][a-z0-9-]{0,31}$", error="A plan name (lower-case letters, digits, '-').")


class ApiKeyIn(Schema):
    name = String(required=True, validate=[Length(min=1, max=100), _PRINTABLE], metadata={"example": "bedtime-app"})
    scopes = List(
        String(validate=OneOf(SCOPES)),
        required=True,
        validate=Length(min=1, max=len(SCOPES)),
        metadata={"description": f"Any of: {', '.join(SCOPES)}."},
    )
    plan = String(
        load_default=FAMILY_PLAN,
        validate=_PLAN,
        metadata={
            "description": f"Metering plan. `{FAMILY_PLAN}` (the default): the key's tokens are metered by the "
            "family's own plan. The partner plans are assigned by administrators only. "
            f"Default plans: {', '.join(DEFAULT_PLANS)}."
        },
    )


class PlanIn(Schema):
    plan = String(
        required=True,
        validate=_PLAN,
        metadata={"description": f"The key's new metering plan, one of: {', '.join(DEFAULT_PLANS)}."},
    )


class ApiKeyOut(Schema):
    id = UUID(required=True)
    name = String(required=True)
    prefix = String(required=True, metadata={"description": "The key's public part, `svk_<id>_`."})
    scopes = List(String(), required=True)
    plan = String(required=True)
    created_at = DateTime(required=True)
    last_used_at = DateTime(allow_none=True)
    revoked_at = DateTime(allow_none=True)


class ApiKeyCreatedOut(ApiKeyOut):
    key = String(required=True, metadata={"description": "The API key. Shown once: it cannot be read again."})


class ApiKeyPlanOut(ApiKeyOut):
    """The key after a plan grant (a subclass: a schema used both nested and top level is registered twice)."""


class ApiKeysOut(Schema):
    api_keys = List(Nested(ApiKeyOut), required=True)


class ExchangeIn(Schema):
    scope = String(
        validate=[Length(min=1, max=200), Regexp(r"^[a-z:]+( [a-z:]+)*$", error="Space-separated scopes.")],
        metadata={"description": "Narrow the token to these of the key's scopes (default: all of them)."},
    )


class ExchangeOut(Schema):
    access_token = String(required=True)
    token_type = String(required=True, metadata={"example": "Bearer"})
    expires_in = Integer(required=True)
    scope = String(required=True)
