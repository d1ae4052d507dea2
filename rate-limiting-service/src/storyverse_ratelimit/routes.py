"""The HTTP API: the parents' usage view (its public path through the gateway is /api/v1/auth/usage, as before the
service existed) and the admin API under /api/rate-limits/ (usage export for billing, grants, abuse blocks,
special occasions, plans). Every route verifies the bearer token itself (security.py) besides the gateway."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import logging
import uuid

from apiflask import APIBlueprint
from flask import Response, g
from storyverse_contracts.identity import ADMIN, PARENT
from storyverse_plans import DEFAULT_PLANS, Occasion

from . import blocks, directory, occasions, usage
from .errors import APIError
from .extensions import redis_store
from .schemas import (
    OCCASION_DATE,
    BlocksOut,
    ExportOut,
    ExportQueryIn,
    FamilyUsageOut,
    GrantIn,
    GrantOut,
    OccasionIn,
    OccasionsOut,
    PlansOut,
    UnblockOut,
    UsageQueryIn,
)
from .security import requires

log = logging.getLogger(__name__)

usage_bp = APIBlueprint("usage", __name__, url_prefix="/api/auth/usage", tag="Usage")
admin_bp = APIBlueprint("admin", __name__, url_prefix="/api/rate-limits", tag="Rate limits (admin)")

USAGE_SCOPE = "usage:read"
PLAN_CLAIM = "plan"  # tokens exchanged from an API key carry their plan
DEFAULT_EXPORT_DAYS = 30
CSV_COLUMNS = ("day", "family_id", "scope", "subject", "stories_used", "grants", "requests", "synced_at")
_CSV_DOC = {
    "description": "Usage rows (JSON), or with `format=csv` a `text/csv` attachment with the same columns.",
    "content": {"text/csv": {"schema": {"type": "string"}}},
}


@usage_bp.get("")
@requires(PARENT)
@usage_bp.input(UsageQueryIn, location="query", arg_name="query")
@usage_bp.output(FamilyUsageOut)
@usage_bp.doc(
    summary="The family's story usage: today's pool, each child's stories left tonight, and the daily history",
    responses=[401, 403],
)
def family_usage(query: dict):
    claims = g.claims
    if PLAN_CLAIM in claims and USAGE_SCOPE not in str(claims.get("scope", "")).split():
        raise APIError.forbidden("insufficient_scope", f"The API key does not grant '{USAGE_SCOPE}'.")
    family = directory.family(claims.get("family_id") or "") if _is_uuid(claims.get("family_id")) else None
    if family is None:
        raise APIError.forbidden("parent_only", "Only a parent of a family can read its usage.")
    return usage.family_usage(family, query["days"])


def _is_uuid(value) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


def require_admin() -> None:
    """The token says admin and so does the account now (a demoted admin's unexpired token is refused)."""
    found = directory.account(g.claims["sub"]) if _is_uuid(g.claims.get("sub")) else None
    if found is None or found[0] != ADMIN:
        raise APIError.forbidden("admin_only", "This endpoint is for administrators.")


@admin_bp.get("/usage")
@requires(ADMIN)
@admin_bp.input(ExportQueryIn, location="query", arg_name="query")
@admin_bp.output(ExportOut)
@admin_bp.doc(
    summary="Export synced daily usage for billing (JSON or CSV)", responses={200: _CSV_DOC, 401: "", 403: ""}
)
def export_usage(query: dict):
    require_admin()
    end = query.get("to") or dt.datetime.now(dt.UTC).date()
    start = query.get("from_") or end - dt.timedelta(days=DEFAULT_EXPORT_DAYS)
    if start > end:
        raise APIError(422, "validation_failed", "`from` must not be after `to`.")
    family = str(query["family_id"]) if query.get("family_id") else None
    rows = usage.history(family, start, end)
    if query["format"] == "csv":
        return _csv(rows, start, end)
    return {"from_": start, "to": end, "rows": rows}


def _csv(rows: list[dict], start: dt.date, end: dt.date) -> Response:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")  # RFC 4180
    writer.writerow(CSV_COLUMNS)
    for r in rows:
        requests = json.dumps(r["requests"], sort_keys=True) if r["requests"] else ""
        writer.writerow(
            [r["day"].isoformat(), r["family_id"], r["scope"], r["subject"], r["stories_used"], r["grants"],
             requests, r["synced_at"].isoformat()]
        )  # fmt: skip
    filename = f"storyverse-usage-{start.isoformat()}-{end.isoformat()}.csv"
    return Response(
        out.getvalue(), mimetype="text/csv", headers={"Content-Disposition": f'attachment; filename="{filename}"'}
    )


@admin_bp.post("/grants")
@requires(ADMIN)
@admin_bp.input(GrantIn, arg_name="body")
@admin_bp.output(GrantOut)
@admin_bp.doc(summary="Grant extra stories for today (family-local day) to a family or an account", responses=[404])
def grant(body: dict):
    require_admin()
    account = None
    if body.get("account_id"):
        found = directory.account(body["account_id"])
        if found is None:
            raise APIError.not_found("account")
        account = (str(body["account_id"]), found[0])
        family = directory.family(found[1])
    else:
        family = directory.family(body["family_id"])
    if family is None:
        raise APIError.not_found("family")
    result = usage.grant(family, account, body["stories"])
    log.info(
        "quota grant",
        extra={"event": "quota_grant", "account_id": g.claims["sub"], "family_id": family.id,
               "target": account[0] if account else "family", "stories": body["stories"]},
    )  # fmt: skip
    return result


@admin_bp.get("/blocks")
@requires(ADMIN)
@admin_bp.output(BlocksOut)
@admin_bp.doc(summary="Abuse blocks in force (IPs and accounts), longest remaining first", responses=[503])
def list_blocks():
    require_admin()
    return {"blocks": blocks.list_blocks(redis_store.client)}


@admin_bp.delete("/blocks/<string:block_id>")
@requires(ADMIN)
@admin_bp.output(UnblockOut)
@admin_bp.doc(summary="Lift an abuse block now (the escalation level is kept)", responses=[404])
def unblock(block_id: str):
    require_admin()
    key = blocks.key_of(block_id)
    if key is None:
        raise APIError.not_found("block")
    lifted = blocks.unblock(redis_store.client, key)
    log.info("abuse unblock", extra={"event": "abuse_unblock", "account_id": g.claims["sub"], "lifted": lifted})
    return {"id": block_id, "lifted": int(lifted)}


@admin_bp.get("/occasions")
@requires(ADMIN)
@admin_bp.output(OccasionsOut)
@admin_bp.doc(summary="Special occasions: dates that add stories to every family's plan")
def list_occasions():
    require_admin()
    return _occasions()


def _occasions() -> dict:
    return {"occasions": [{"date": o.date, "extra": o.extra} for o in occasions.all_occasions(redis_store.client)]}


@admin_bp.put("/occasions/<string:date>")
@requires(ADMIN)
@admin_bp.input(OccasionIn, arg_name="body")
@admin_bp.output(OccasionsOut)
@admin_bp.doc(summary="Set a special occasion (`YYYY-MM-DD` once or `MM-DD` every year, the family's local date)")
def put_occasion(date: str, body: dict):
    require_admin()
    occasion = Occasion(date, body["extra"])
    if not occasion.valid or not _real_date(date):
        raise APIError(422, "validation_failed", f"date must match {OCCASION_DATE} and be a real date.")
    occasions.put(redis_store.client, occasion)
    log.info("occasion set", extra={"event": "occasion_set", "account_id": g.claims["sub"], "date": date})
    return _occasions()


def _real_date(text: str) -> bool:
    try:
        dt.date.fromisoformat(text if len(text) == 10 else f"2024-{text}")  # a leap year admits 02-29
    except ValueError:
        return False
    return True


@admin_bp.delete("/occasions/<string:date>")
@requires(ADMIN)
@admin_bp.output({}, status_code=204)
@admin_bp.doc(summary="Remove a special occasion (today's counters lose its stories on the next sync)")
def delete_occasion(date: str):
    require_admin()
    if not occasions.delete(redis_store.client, date):
        raise APIError.not_found("occasion")
    return ""


@admin_bp.get("/plans")
@requires(ADMIN)
@admin_bp.output(PlansOut)
@admin_bp.doc(summary="The plans (tiers) the gateway enforces")
def list_plans():
    require_admin()
    return {"plans": [{"tier": p.tier, "daily": p.daily, "rate_burst": p.rate_burst} for p in DEFAULT_PLANS]}
