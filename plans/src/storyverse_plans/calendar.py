"""The family's day: the quota resets at local midnight in the family's time zone, never at UTC midnight."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


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
    """Today in the family's zone and when it ends."""
    tz = zone(tz_name, fallback)
    today = dt.datetime.fromtimestamp(now_s, tz).date()
    midnight = dt.datetime.combine(today + dt.timedelta(days=1), dt.time(0), tzinfo=tz)
    return Day(today.isoformat(), midnight.timestamp())
