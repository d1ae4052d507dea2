"""Today's story usage on the family page: sv-quota's daily counters (storyverse_contracts.keys), read from Redis
in one pipeline, for the family pool and each child's own counter.

The day is the family's local day (storyverse_plans.local_day, the plugin's own computation) and a counter is read
as the rate limiting service reads it (storyverse_contracts.counters: a lapsed reservation counts as used). The
limits are the plan's daily stories (storyverse_plans) and the child's ``daily_story_limit`` as its token carries
it (the control, capped at the tier's limit: what sv-quota enforces); an admin grant or occasion stories for the
day show as extra. Redis down: None, and the page says "usage unavailable"."""

from __future__ import annotations

import logging

import redis
from storyverse_contracts.counters import Counter, counter_from_hash
from storyverse_contracts.keys import child_key, family_key
from storyverse_plans import local_day, plan_for

from ..clock import now_ts
from ..extensions import redis_store

log = logging.getLogger(__name__)


def _line(counter: Counter, limit: int) -> dict:
    return {"used": counter.used, "in_flight": counter.in_flight, "extra": counter.grant, "limit": limit}


def read_counters(client: redis.Redis, keys: list[str], now_ms: int) -> list[Counter]:
    """HGETALL of every key in one pipeline round trip (all keys share the family's hash tag)."""
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.hgetall(key)
    return [counter_from_hash(fields or {}, now_ms) for fields in pipe.execute()]


def usage_today(family, kids: list[dict], now_s: float | None = None) -> dict | None:
    """{"day", "family": line, "children": {child id: line}} with line = used / in_flight / extra / limit; None
    when Redis cannot be read (the page still renders)."""
    now = now_ts() if now_s is None else now_s
    day = local_day(now, family.time_zone).date
    family_id = str(family.id)
    keys = [family_key(family_id, day)] + [child_key(family_id, kid["id"], day) for kid in kids]
    try:
        values = read_counters(redis_store.client, keys, int(now * 1000))
    except (redis.RedisError, OSError) as exc:
        log.warning("usage unavailable", extra={"event": "page_usage_unavailable", "error": type(exc).__name__})
        return None
    return {
        "day": day,
        "family": _line(values[0], plan_for(family.tier).daily),
        "children": {
            kid["id"]: _line(own, kid["daily_story_limit"]) for kid, own in zip(kids, values[1:], strict=True)
        },
    }
