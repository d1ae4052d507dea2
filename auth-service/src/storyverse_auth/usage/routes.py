"""``GET /api/auth/usage``: the family's usage and what each child has left tonight (parents)."""

from __future__ import annotations

from ..apikeys import errors as key_errors
from ..apikeys.guard import is_api_key_token
from ..security import bearer, current_claims
from ..services import families
from . import bp, service
from .schemas import FamilyUsageOut, UsageQueryIn

USAGE_SCOPE = "usage:read"


@bp.get("")
@bp.auth_required(bearer)
@bp.input(UsageQueryIn, location="query", arg_name="query")
@bp.output(FamilyUsageOut)
@bp.doc(
    summary="The family's story usage: today's pool, each child's stories left tonight, and the daily history",
    responses=[401, 403],
)
def family_usage(query: dict):
    claims = current_claims()
    if is_api_key_token(claims) and USAGE_SCOPE not in str(claims.get("scope", "")).split():
        raise key_errors.scope_not_granted(USAGE_SCOPE)
    parent = families.require_parent(claims)
    return service.family_usage(parent.family, query["days"])
