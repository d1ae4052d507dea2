"""Allowed hours (the bedtime window) in the family's time zone: pure, the clock is a parameter.

A window is "HH:MM-HH:MM", start inclusive, end exclusive, on the family's local wall clock. A start after the end
crosses midnight ("19:00-07:00"); "00:00-24:00" is the whole day. The claim may be one window or a list of them.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_WINDOW = re.compile(r"\A([01]\d|2[0-4]):([0-5]\d)-([01]\d|2[0-4]):([0-5]\d)\Z")
_TZ = re.compile(r"\A[A-Za-z0-9_+-]+(/[A-Za-z0-9_+-]+){0,2}\Z")
MAX_WINDOWS = 8
DAY_MIN = 24 * 60


class BadClaim(ValueError):
    """A claim the policy cannot read: the request is refused (fail closed)."""


def _minutes(hours: str, minutes: str) -> int:
    value = int(hours) * 60 + int(minutes)
    if value > DAY_MIN:
        raise BadClaim("allowed_hours has a time after 24:00")
    return value


def parse_window(text: Any) -> tuple[int, int]:
    """(start, end) in minutes since local midnight; raises BadClaim."""
    match = _WINDOW.match(text) if isinstance(text, str) else None
    if match is None:
        raise BadClaim("allowed_hours is not HH:MM-HH:MM")
    start, end = _minutes(*match.group(1, 2)), _minutes(*match.group(3, 4))
    if start == end or start == DAY_MIN:
        raise BadClaim("allowed_hours is an empty or ambiguous window")
    return start, end


def parse_windows(claim: Any) -> tuple[tuple[int, int], ...]:
    items = claim if isinstance(claim, list | tuple) else [claim]
    if not items or len(items) > MAX_WINDOWS:
        raise BadClaim("allowed_hours has no window or too many")
    return tuple(parse_window(item) for item in items)


def zone(name: Any) -> ZoneInfo:
    """The IANA zone of the `tz` claim; raises BadClaim (never touches a path outside the tz database)."""
    if not isinstance(name, str) or len(name) > 64 or not _TZ.match(name):
        raise BadClaim("tz is not an IANA time zone name")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise BadClaim("tz is not a known time zone") from exc


def local_minute(now_s: float, tz: ZoneInfo) -> int:
    local = dt.datetime.fromtimestamp(now_s, tz)
    return local.hour * 60 + local.minute


def inside(minute: int, window: tuple[int, int]) -> bool:
    start, end = window
    if start < end:
        return start <= minute < end
    return minute >= start or minute < end  # crosses midnight


def allowed_now(claim: Any, tz_name: Any, now_s: float) -> bool:
    """Whether the local time in tz_name at now_s falls in one of the claim's windows; raises BadClaim."""
    windows = parse_windows(claim)
    minute = local_minute(now_s, zone(tz_name))
    return any(inside(minute, w) for w in windows)
