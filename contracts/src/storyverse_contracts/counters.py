"""Reading one sv-quota daily counter hash (layout: storyverse_contracts.keys), shared by every service that shows
usage (the rate limiting service's usage API, the auth service's family page). Pure: the caller fetches the hash."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .keys import RESERVATION


@dataclass(frozen=True)
class Counter:
    used: int = 0  # committed units plus lapsed reservations
    grant: int = 0  # extra units for the day (admin grants and occasion stories)
    in_flight: int = 0  # reservations still held
    occasion: int = 0  # the occasion stories included in `grant` (field `occ`)


def as_int(value) -> int:
    """An integer field value; missing or malformed reads as 0."""
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def _text(value) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def counter_from_hash(fields: Mapping, now_ms: int) -> Counter:
    """A counter from its HGETALL reply (str or bytes names). A reservation whose expiry passed lapsed: sv-quota
    charges it (it sweeps it into `used` at the counter's next decision), so it counts as used, never as nothing."""
    by_name = {_text(name): value for name, value in (fields or {}).items()}
    used, held = as_int(by_name.get("used")), 0
    for name, value in by_name.items():
        if name.startswith(RESERVATION):
            if as_int(value) > now_ms:
                held += 1
            else:
                used += 1
    return Counter(used, as_int(by_name.get("grant")), held, as_int(by_name.get("occ")))
