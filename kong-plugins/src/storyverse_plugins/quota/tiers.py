"""Plans, special occasions and the family's day: pure data and calendar math (no Redis, no PDK)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


@dataclass(frozen=True)
class Plan:
    """A tier: daily story quota and the extra burst capacity its users get on rate-limit policies."""

    tier: str
    daily: int
    rate_burst: int = 0


@dataclass(frozen=True)
class Occasion:
    """A day that adds stories: `YYYY-MM-DD` once, or `MM-DD` every year (local date of the family)."""

    date: str
    extra: int


DEFAULT_PLANS = (Plan("basic", 5, 0), Plan("premium", 20, 5))


@dataclass(frozen=True)
class Day:
    """The family's current local day: its date (key part) and the epoch second of the next local midnight."""

    date: str
    reset_s: float


@lru_cache(maxsize=512)
def zone(name: str | None, fallback: str = "UTC") -> ZoneInfo:
    """The ZoneInfo for a tz claim; unknown or missing names fall back (a bad claim must not break quotas)."""
    for candidate in (name, fallback, "UTC"):
        if candidate:
            try:
                return ZoneInfo(candidate)
            except (ZoneInfoNotFoundError, ValueError):
                continue
    return ZoneInfo("UTC")


def local_day(now_s: float, tz_name: str | None, fallback: str = "UTC") -> Day:
    """Today in the family's zone and when it ends: the quota resets at local midnight, never at UTC midnight."""
    tz = zone(tz_name, fallback)
    today = dt.datetime.fromtimestamp(now_s, tz).date()
    midnight = dt.datetime.combine(today + dt.timedelta(days=1), dt.time(0), tzinfo=tz)
    return Day(today.isoformat(), midnight.timestamp())


def occasion_extra(occasions: tuple[Occasion, ...], date: str) -> int:
    """Stories the operator adds on this local date (`YYYY-MM-DD` or recurring `MM-DD` entries)."""
    return sum(o.extra for o in occasions if o.date in (date, date[5:]))


def daily_limit(plan: Plan, occasions: tuple[Occasion, ...], date: str) -> int:
    return plan.daily + occasion_extra(occasions, date)
