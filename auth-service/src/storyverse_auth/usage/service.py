"""Usage views over sv-quota's counters (live, from Redis) and usage_daily (durable, PostgreSQL), and admin grants.

What is left today mirrors sv-quota's decision (quota/strategies.counter_step): a child's story is charged on the
family pool (plan limit + grant) and on the child's own counter (its daily_story_limit + grant), so
``left = min(pool limit + grant - used - in flight, own limit + grant - used - in flight)``. The plan limit is the
tier's (controls.TIER_DAILY_STORY_LIMIT, kept equal to sv-quota's `plans`); operator occasions are the gateway's
and are not added here.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from .. import controls
from ..clock import now_ts
from ..extensions import db, redis_store
from ..models import Account, Family
from ..services.children import list_children
from ..tokens import Principal
from . import counters
from .models import UsageDaily

DAY_S = 86_400
GRANT_EXPIRY_S = DAY_S + 3_600  # as the plugin: a day past local midnight (plus its jitter's upper bound)


@dataclass(frozen=True)
class Today:
    day: dt.date
    resets_at: dt.datetime
    limit: int
    counter: counters.Counter

    @property
    def left(self) -> int:
        return _left(self.limit, self.counter)


def _left(limit: int, c: counters.Counter) -> int:
    return max(0, limit + c.grant - c.used - c.in_flight)


def stories_left_message(left: int) -> str:
    if left == 0:
        return "No stories left tonight"
    return f"{left} {'story' if left == 1 else 'stories'} left tonight"


def family_usage(family: Family, history_days: int) -> dict[str, Any]:
    """The parent's view: today's pool, each child's remaining stories, and the synced history."""
    current = now_ts()
    day, reset_s = counters.local_day(current, family.time_zone)
    date = day.isoformat()
    kids = list_children(family.id)
    keys = [counters.family_key(str(family.id), date)]
    keys += [counters.child_key(str(family.id), str(child.id), date) for child in kids]
    values = counters.read(redis_store.client, keys, now_ms=int(current * 1000))
    pool_limit = controls.tier_limit(family.tier)
    pool = values[0]
    pool_left = _left(pool_limit, pool)
    children_out = []
    for child, own in zip(kids, values[1:], strict=True):
        own_limit = Principal.of(child).child_controls().daily_story_limit
        left = min(pool_left, _left(own_limit, own))
        children_out.append(
            {
                "id": str(child.id),
                "display_name": child.display_name,
                "username": child.username,
                "daily_story_limit": own_limit,
                "used": own.used,
                "granted": own.grant,
                "in_flight": own.in_flight,
                "left": left,
                "message": stories_left_message(left),
            }
        )
    return {
        "family_id": str(family.id),
        "tier": family.tier,
        "time_zone": family.time_zone,
        "day": day,
        "resets_at": dt.datetime.fromtimestamp(reset_s, dt.UTC),
        "family": {
            "limit": pool_limit,
            "used": pool.used,
            "granted": pool.grant,
            "in_flight": pool.in_flight,
            "left": pool_left,
        },
        "children": children_out,
        "history": history(str(family.id), day - dt.timedelta(days=history_days), day),
    }


def history(family_id: str | None, start: dt.date, end: dt.date) -> list[dict[str, Any]]:
    """Synced usage rows between two family-local days (inclusive), oldest first."""
    stmt = select(UsageDaily).where(UsageDaily.day >= start, UsageDaily.day <= end)
    if family_id is not None:
        stmt = stmt.where(UsageDaily.family_id == family_id)
    stmt = stmt.order_by(UsageDaily.day, UsageDaily.family_id, UsageDaily.scope, UsageDaily.subject)
    return [
        {
            "family_id": r.family_id,
            "scope": r.scope,
            "subject": r.subject,
            "day": r.day,
            "stories_used": r.stories_used,
            "grants": r.grants,
            "requests": r.requests,
            "synced_at": r.synced_at,
        }
        for r in db.session.scalars(stmt)
    ]


def grant_targets(family: Family, account: Account | None, date: str) -> list[tuple[str, str, str]]:
    """(scope, subject, key) of every counter the grant raises: the family pool, plus the account's own counter
    (a child's limit, or the per-user counter used when sv-quota's scope is `user`)."""
    fid = str(family.id)
    out = [("family", "", counters.family_key(fid, date))]
    if account is not None and account.role == "child":
        out.append(("child", str(account.id), counters.child_key(fid, str(account.id), date)))
    elif account is not None:
        out.append(("user", str(account.id), counters.user_key(fid, str(account.id), date)))
    return out


def grant(family: Family, account: Account | None, stories: int) -> dict[str, Any]:
    """HINCRBY the `grant` field of today's counters (family-local day) by ``stories``."""
    day, reset_s = counters.local_day(now_ts(), family.time_zone)
    targets = grant_targets(family, account, day.isoformat())
    totals = counters.add_grant(redis_store.client, [t[2] for t in targets], stories, int(reset_s) + GRANT_EXPIRY_S)
    return {
        "family_id": str(family.id),
        "day": day,
        "stories": stories,
        "counters": [
            {"scope": scope, "subject": subject, "grant": total}
            for (scope, subject, _), total in zip(targets, totals, strict=True)
        ],
    }


def find_family(family_id: uuid.UUID) -> Family | None:
    return db.session.get(Family, family_id)


def find_account(account_id: uuid.UUID) -> Account | None:
    return db.session.get(Account, account_id)
