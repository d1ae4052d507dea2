"""Admin endpoints: usage export (JSON/CSV) for billing, quota grants, and sv-quota's abuse blocks."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import logging
import uuid

from flask import Response

from ..apikeys import errors as key_errors
from ..errors import APIError
from ..extensions import db, redis_store
from ..models import Account
from ..security import bearer, current_claims
from ..usage import service as usage
from . import bp
from .schemas import BlocksOut, GrantIn, GrantOut, UsageExportOut, UsageQuery

log = logging.getLogger(__name__)

DEFAULT_EXPORT_DAYS = 30
CSV_COLUMNS = ("day", "family_id", "scope", "subject", "stories_used", "grants", "requests", "synced_at")
_CSV_DOC = {
    "description": "Usage rows (JSON), or with `format=csv` a `text/csv` attachment with the same columns.",
    "content": {"text/csv": {"schema": {"type": "string"}}},
}


def require_admin() -> Account:
    claims = current_claims()
    if claims.get("role") != "admin":
        raise key_errors.admin_only()
    account = db.session.get(Account, uuid.UUID(claims["sub"]))
    if account is None:
        raise APIError.token_revoked()
    if account.role != "admin":
        raise key_errors.admin_only()
    return account


def _not_found(what: str) -> APIError:
    return APIError(404, f"{what}_not_found", f"No such {what}.")


@bp.get("/usage")
@bp.auth_required(bearer)
@bp.input(UsageQuery, location="query", arg_name="query")
@bp.output(UsageExportOut)
@bp.doc(
    summary="Export synced daily usage for billing (JSON or CSV)",
    responses={200: _CSV_DOC, 401: "Unauthorized", 403: "Forbidden"},
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
            [
                r["day"].isoformat(),
                r["family_id"],
                r["scope"],
                r["subject"],
                r["stories_used"],
                r["grants"],
                requests,
                r["synced_at"].isoformat(),
            ]
        )
    filename = f"storyverse-usage-{start.isoformat()}-{end.isoformat()}.csv"
    return Response(
        out.getvalue(),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@bp.post("/grants")
@bp.auth_required(bearer)
@bp.input(GrantIn, arg_name="body")
@bp.output(GrantOut)
@bp.doc(summary="Grant extra stories for today (family-local day) to a family or an account", responses=[401, 403, 404])
def grant(body: dict):
    admin = require_admin()
    account = None
    if body.get("account_id"):
        account = usage.find_account(body["account_id"])
        if account is None:
            raise _not_found("account")
        family = account.family
    else:
        family = usage.find_family(body["family_id"])
        if family is None:
            raise _not_found("family")
    result = usage.grant(family, account, body["stories"])
    log.info(
        "quota grant",
        extra={
            "event": "quota_grant",
            "account_id": str(admin.id),
            "family_id": result["family_id"],
            "target": str(account.id) if account else "family",
            "stories": body["stories"],
        },
    )
    return result


@bp.get("/blocks")
@bp.auth_required(bearer)
@bp.output(BlocksOut)
@bp.doc(
    summary="Current abuse blocks set by sv-quota (IPs and accounts), longest remaining first",
    responses=[401, 403, 503],
)
def list_blocks():
    require_admin()
    try:
        from storyverse_plugins.quota.abuse import list_blocks as plugin_list_blocks
    except ImportError as exc:  # the auth image without the plugin package
        raise APIError.unavailable("Abuse blocks need the storyverse_plugins package installed.") from exc
    return {"blocks": plugin_list_blocks(redis_store.client)}
