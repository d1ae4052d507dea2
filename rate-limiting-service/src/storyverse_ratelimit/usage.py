"""Usage views over sv-quota's counters (live, Redis) and usage_daily (durable, PostgreSQL), and admin grants.

What is left today mirrors sv-quota's decision: a child's story is charged on the family pool (plan limit + grant)
and on the child's own counter (its daily limit + grant), so ``left = min(pool left, own left)``. The plan limit is
storyverse_plans' (the plugin's source too); occasion stories reach the counters' `grant` (occasions.py).
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from sqlalchemy import select
from storyverse_contracts.keys import child_key, family_key, user_key
from storyverse_plans import local_day, plan_for

from . import counters, directory
from .extensions import db, redis_store
from .models import UsageDaily

DAY_S = 86_400
GRANT_EXPIRY_S = DAY_S + 3_600  # as the plugin: a day past local midnight (plus its jitter's upper bound)


def _left(limit: int, c: counters.Counter) -> int:
    return max(0, limit + c.grant - c.used - c.in_flight)


def stories_left_message(left: int) -> str:
    if left == 0:
        return "No stories left tonight"
    return f"{left} {'story' if left == 1 else 'stories'} left tonight"


def family_usage(family: directory.Family, history_days: int) -> dict[str, Any]:
    """The parent's view: today's pool, each child's remaining stories, and the synced history."""
    current = time.time()
    today = local_day(current, family.time_zone)
    day = dt.date.fromisoformat(today.date)
    kids = directory.children(family)
    keys = [family_key(family.id, today.date)] + [child_key(family.id, c.id, today.date) for c in kids]
    values = counters.read(redis_store.client, keys, now_ms=int(current * 1000))
    pool_limit = plan_for(family.tier).daily
    pool = values[0]
    pool_left = _left(pool_limit, pool)
    children_out = []
    for child, own in zip(kids, values[1:], strict=True):
        left = min(pool_left, _left(child.daily_story_limit, own))
        children_out.append(
            {
                "id": child.id,
                "display_name": child.display_name,
                "username": child.username,
                "daily_story_limit": child.daily_story_limit,
                "used": own.used,
                "granted": own.grant,
                "in_flight": own.in_flight,
                "left": left,
                "message": stories_left_message(left),
            }
        )
    return {
        "family_id": family.id,
        "tier": family.tier,
        "time_zone": family.time_zone,
        "day": day,
        "resets_at": dt.datetime.fromtimestamp(today.reset_s, dt.UTC),
        "family": {
            "limit": pool_limit,
            "used": pool.used,
            "granted": pool.grant,
            "in_flight": pool.in_flight,
            "left": pool_left,
        },
        "children": children_out,
        "history": history(family.id, day - dt.timedelta(days=history_days), day),
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


def grant_targets(family_id: str, account: tuple[str, str] | None, date: str) -> list[tuple[str, str, str]]:
    """(scope, subject, key) of every counter the grant raises: the family pool, plus the account's own counter
    (a child's limit, or the per-user counter used when sv-quota's scope is `user`). ``account`` = (id, role)."""
    out = [("family", "", family_key(family_id, date))]
    if account is not None:
        account_id, role = account
        if role == "child":
            out.append(("child", account_id, child_key(family_id, account_id, date)))
        else:
            out.append(("user", account_id, user_key(family_id, account_id, date)))
    return out


def grant(family: directory.Family, account: tuple[str, str] | None, stories: int) -> dict[str, Any]:
    """HINCRBY the `grant` field of today's counters (family-local day) by ``stories``."""
    today = local_day(time.time(), family.time_zone)
    targets = grant_targets(family.id, account, today.date)
    totals = counters.add_grant(
        redis_store.client, [t[2] for t in targets], stories, int(today.reset_s) + GRANT_EXPIRY_S
    )
    return {
        "family_id": family.id,
        "day": dt.date.fromisoformat(today.date),
        "stories": stories,
        "counters": [
            {"scope": scope, "subject": subject, "grant": total}
            for (scope, subject, _), total in zip(targets, totals, strict=True)
        ],
    }
