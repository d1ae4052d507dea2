"""sv-quota's daily counters in Redis, as the service reads (usage, gauges) and writes (grants, occasions) them.
The layout is storyverse_contracts.keys; every key of one family shares its hash tag, so a family's reads are one
pipeline round trip on Redis Cluster too."""

from __future__ import annotations

import time
from collections.abc import Iterator

import redis
from storyverse_contracts.counters import Counter, counter_from_hash
from storyverse_contracts.keys import COUNTER_PATTERN, CounterKey, parse_counter

# Raise the counter's `grant` by the change of the occasion's stories since the last sweep (`occ` remembers what
# this counter already got), so a sweep is idempotent, an edited occasion corrects itself and admin grants stay.
_OCCASION_LUA = """
local applied = tonumber(redis.call('hget', KEYS[1], 'occ') or '0')
local delta = tonumber(ARGV[1]) - applied
if delta ~= 0 then
  redis.call('hincrby', KEYS[1], 'grant', delta)
  redis.call('hset', KEYS[1], 'occ', ARGV[1])
end
return delta
"""


def scan_counters(client: redis.Redis, count: int = 1000) -> Iterator[CounterKey]:
    """Every daily counter in Redis. On a RedisCluster client, scan_iter walks every primary."""
    for raw in client.scan_iter(match=COUNTER_PATTERN, count=count):
        parsed = parse_counter(raw.decode() if isinstance(raw, bytes) else raw)
        if parsed is not None:
            yield parsed


def read(client: redis.Redis, keys: list[str], now_ms: int | None = None) -> list[Counter]:
    """used, grant and in-flight reservations of each counter, in one pipeline (HGETALL: sv-quota keeps a counter's
    held units in its hash as r:<rid> -> expiry ms). A unit whose expiry passed lapsed: sv-quota charges it (it sweeps
    it into `used` at the counter's next decision), so it counts as used here already, never as nothing."""
    now = int(time.time() * 1000) if now_ms is None else now_ms
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.hgetall(key)
    return [counter_from_hash(h or {}, now) for h in pipe.execute()]


def add_grant(client: redis.Redis, keys: list[str], units: int, expire_at_s: int) -> list[int]:
    """HINCRBY <counter> grant <units> on each key (what sv-quota reads as extra units for the day); a counter
    created here expires after the day like the plugin's own (EXPIREAT only when it has no expiry yet)."""
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.hincrby(key, "grant", units)
        pipe.expireat(key, expire_at_s, nx=True)
    replies = pipe.execute()
    return [int(replies[i * 2]) for i in range(len(keys))]


def apply_occasion(client: redis.Redis, key: str, extra: int) -> int:
    """Bring one counter's occasion stories to ``extra``; returns the change made to its grant."""
    return int(client.eval(_OCCASION_LUA, 1, key, extra))
