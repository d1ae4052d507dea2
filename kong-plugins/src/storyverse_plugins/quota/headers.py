"""Response headers: IETF RateLimit fields (draft-ietf-httpapi-ratelimit-headers) for the binding policy,
quota state, and Retry-After. Pure: values in, a header dict out. Resets are delay-seconds, never epochs.

`q` is the policy's sustained quota per window `w`; `r` never exceeds `q`. A tier's burst (premium's rate_burst) is
extra capacity the server grants without advertising it: the draft lets a server be more permissive than its
announced policy, never less, so a client pacing itself by `r` stays within the limit with or without the burst."""

from __future__ import annotations

import math
from dataclasses import dataclass

DAY_S = 86_400


@dataclass(frozen=True)
class LimitView:
    """One limit as a client sees it."""

    kind: str  # "rate" | "quota"
    name: str
    quota: int  # q: units per window
    window_s: int  # w
    remaining: int  # r
    reset_s: int  # t: seconds until the limit is whole again (rate) or the day ends (quota)


def seconds(ms: float) -> int:
    return max(0, math.ceil(ms / 1000.0))


def binding(views: list[LimitView]) -> LimitView | None:
    """The limit closest to rejecting: fewest remaining, then the longest wait."""
    return min(views, key=lambda v: (v.remaining, -v.reset_s), default=None)


def ratelimit_fields(view: LimitView) -> dict[str, str]:
    name = view.name.replace('"', "")
    return {
        "RateLimit-Policy": f'"{name}";q={view.quota};w={view.window_s}',
        "RateLimit": f'"{name}";r={view.remaining};t={view.reset_s}',
    }


def quota_fields(view: LimitView) -> dict[str, str]:
    """Quota state so an app can say "2 stories left tonight" (Reset: seconds until the family's midnight)."""
    return {
        "X-Quota-Limit": str(view.quota),
        "X-Quota-Remaining": str(view.remaining),
        "X-Quota-Reset": str(view.reset_s),
    }


def render(views: list[LimitView], bind: LimitView | None = None) -> dict[str, str]:
    """IETF fields for the binding limit plus the quota's state when the request has a quota."""
    out: dict[str, str] = {}
    bind = bind or binding(views)
    if bind is not None:
        out.update(ratelimit_fields(bind))
    quota = [v for v in views if v.kind == "quota"]
    if quota:
        out.update(quota_fields(binding(quota)))
    return out
