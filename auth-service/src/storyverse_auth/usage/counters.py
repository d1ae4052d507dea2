"""sv-quota's daily counters in Redis, as the auth service reads (usage) and writes (admin grants) them.

Key names come from the plugin package's builder (``storyverse_plugins.common.keys``) when it is installed; the auth
image may ship without it, so a frozen copy of the same format stands in (a test asserts both build equal keys):

  sv:quota:v1:{f:<family>}:q:<scope>:<YYYY-MM-DD>   hash: used, grant    (scope: fam | u:<sub> | c:<sub>)
  sv:quota:v1:{u:<sub>}:q:u:<sub>:<YYYY-MM-DD>      the same for an account without a family
  ...:<YYYY-MM-DD>:res                              zset of in-flight reservations (rid -> expiry ms)

Every key of a family shares the `{f:<family>}` hash tag, so one pipeline reads a family's counters on Redis Cluster.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import redis

try:
    from storyverse_plugins.common.keys import PREFIX, quota_key, reservations_key
except ImportError:  # pragma: no cover - the auth image without the plugin package
    PREFIX = "sv:quota:v1:"
    _UNSAFE = re.compile(r"[{}\s]")

    def quota_key(tag: str, scope: str, day: str) -> str:
        return f"{PREFIX}{tag}:q:{_UNSAFE.sub('_', str(scope))}:{day}"

    def reservations_key(counter_key: str) -> str:
        return counter_key + ":res"


# Hash tags are literal braces; SCAN's glob treats `{` `}` as plain characters.
SCAN_PATTERN = PREFIX + "{*}:q:*"
_COUNTER = re.compile(
    re.escape(PREFIX) + r"\{(?P<kind>[fu]):(?P<tag_id>[^}]*)\}:q:(?P<scope>fam|[uc]:[^:]+):(?P<day>\d{4}-\d{2}-\d{2})\Z"
)
SCOPE_NAMES = {"fam": "family", "u": "user", "c": "child"}


@dataclass(frozen=True)
class CounterKey:
    """A parsed daily counter key."""

    key: str
    family_id: str  # the family of a `{f:...}` tag; "" for a `{u:...}` tag
    scope: str  # family | user | child
    subject: str  # the account id; "" for the family pool
    day: dt.date


@dataclass(frozen=True)
class Counter:
    used: int = 0
    grant: int = 0
    in_flight: int = 0


def family_tag(family_id: str) -> str:
    return "{f:" + str(family_id) + "}"


def family_key(family_id: str, day: str) -> str:
    return quota_key(family_tag(family_id), "fam", day)


def child_key(family_id: str, child_id: str, day: str) -> str:
    return quota_key(family_tag(family_id), "c:" + str(child_id), day)


def user_key(family_id: str, account_id: str, day: str) -> str:
    return quota_key(family_tag(family_id), "u:" + str(account_id), day)


def parse_key(key: str) -> CounterKey | None:
    """The counter a key names, or None for reservations, other sv-quota keys and malformed names."""
    match = _COUNTER.match(key)
    if match is None:
        return None
    try:
        day = dt.date.fromisoformat(match["day"])
    except ValueError:
        return None
    scope_text = match["scope"]
    scope = SCOPE_NAMES[scope_text[0] if scope_text != "fam" else "fam"]
    subject = "" if scope_text == "fam" else scope_text[2:]
    family_id = match["tag_id"] if match["kind"] == "f" else ""
    return CounterKey(key, family_id, scope, subject, day)


def scan_counters(client: redis.Redis, count: int = 1000) -> Iterator[CounterKey]:
    """Every daily counter in Redis. On a RedisCluster client, scan_iter walks every primary."""
    for raw in client.scan_iter(match=SCAN_PATTERN, count=count):
        key = raw.decode() if isinstance(raw, bytes) else raw
        parsed = parse_key(key)
        if parsed is not None:
            yield parsed


def _int(value) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def read(client: redis.Redis, keys: list[str], now_ms: int | None = None) -> list[Counter]:
    """used, grant (and in-flight reservations when ``now_ms`` is given) of each counter, in one pipeline.

    Callers pass keys of one hash tag (one family), so this is one round trip on a cluster too."""
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.hmget(key, "used", "grant")
        if now_ms is not None:
            pipe.zcount(reservations_key(key), now_ms, "+inf")
    replies = pipe.execute()
    step = 2 if now_ms is not None else 1
    out = []
    for i in range(len(keys)):
        used, grant = replies[i * step]
        held = _int(replies[i * step + 1]) if now_ms is not None else 0
        out.append(Counter(_int(used), _int(grant), held))
    return out


def add_grant(client: redis.Redis, keys: list[str], units: int, expire_at_s: int) -> list[int]:
    """HINCRBY <counter> grant <units> on each key (what sv-quota reads as extra units for the day); a counter
    created here expires after the day like the plugin's own (EXPIREAT only when it has no expiry yet)."""
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.hincrby(key, "grant", units)
        pipe.expireat(key, expire_at_s, nx=True)
    replies = pipe.execute()
    return [int(replies[i * 2]) for i in range(len(keys))]


def zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def local_day(now_s: float, tz_name: str | None) -> tuple[dt.date, float]:
    """The family's local date now and the epoch second its next local midnight falls on (as sv-quota's tiers)."""
    tz = zone(tz_name)
    today = dt.datetime.fromtimestamp(now_s, tz).date()
    midnight = dt.datetime.combine(today + dt.timedelta(days=1), dt.time(0), tzinfo=tz)
    return today, midnight.timestamp()
