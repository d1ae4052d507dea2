"""Special occasions set at run time by an admin (the seed's "burst allowance for special occasions").

An occasion adds stories to every family's plan limit on a local date (`YYYY-MM-DD` once, `MM-DD` every year).
Occasions known at deploy time can also be put in sv-quota's config (kong.yml `occasions`); the ones here live in
Redis (storyverse_contracts.keys.OCCASIONS) and reach the per-request decision without a kong.yml change: each sync
pass raises the `grant` of that day's plan-limited counters (the family pool, per-user quotas; a child's own limit
is its parent's to set) by the occasion's stories, through the field sv-quota already reads. So a family gets them
from the first sweep after its first story of the day (within USAGE_SYNC_INTERVAL).
"""

from __future__ import annotations

import redis
from storyverse_contracts.counters import as_int
from storyverse_contracts.keys import OCCASIONS, CounterKey
from storyverse_plans import Occasion, occasion_extra

from . import counters

PLAN_SCOPES = ("family", "user")


def all_occasions(client: redis.Redis) -> tuple[Occasion, ...]:
    raw = client.hgetall(OCCASIONS) or {}
    found = (Occasion(str(date), as_int(extra)) for date, extra in raw.items())
    return tuple(sorted((o for o in found if o.valid), key=lambda o: o.date))


def put(client: redis.Redis, occasion: Occasion) -> None:
    client.hset(OCCASIONS, occasion.date, occasion.extra)


def delete(client: redis.Redis, date: str) -> bool:
    """Remove an occasion; counters it raised today are lowered again on the next sweep."""
    return bool(client.hdel(OCCASIONS, date))


def sweep(
    client: redis.Redis, found: list[CounterKey], values: list[counters.Counter], occasions: tuple[Occasion, ...]
) -> int:
    """Apply the occasions to these counters (one script call only where the stories differ from what the counter
    already got); returns how many counters changed."""
    changed = 0
    for c, value in zip(found, values, strict=True):
        extra = occasion_extra(occasions, c.day.isoformat()) if c.scope in PLAN_SCOPES else 0
        if extra != value.occasion and counters.apply_occasion(client, c.key, extra):
            changed += 1
    return changed
