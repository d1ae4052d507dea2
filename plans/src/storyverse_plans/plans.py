"""Tiers and special occasions: the seed's "Basic tier: 5 stories per day, Premium tier: 20 stories per day, burst
allowance for special occasions". The plan names are storyverse_contracts.tiers; the numbers are here."""

from __future__ import annotations

import re
from dataclasses import dataclass

from storyverse_contracts.tiers import BASIC, DEFAULT_TIER, PARTNER_BASIC, PARTNER_PREMIUM, PREMIUM

_OCCASION_DATE = re.compile(r"\A(?:\d{4}-)?\d{2}-\d{2}\Z")


@dataclass(frozen=True)
class Plan:
    """A tier: daily story quota and the extra burst capacity its users get on rate-limit policies."""

    tier: str
    daily: int
    rate_burst: int = 0

    def as_config(self) -> dict[str, int | str]:
        """The plan as sv-quota's `plans` config entry (kong.yml)."""
        out: dict[str, int | str] = {"tier": self.tier, "daily": self.daily}
        if self.rate_burst:
            out["rate_burst"] = self.rate_burst
        return out


@dataclass(frozen=True)
class Occasion:
    """A day that adds stories: `YYYY-MM-DD` once, or `MM-DD` every year (local date of the family)."""

    date: str
    extra: int

    @property
    def valid(self) -> bool:
        return bool(_OCCASION_DATE.match(self.date)) and self.extra > 0


DEFAULT_PLANS = (
    Plan(BASIC, 5, 0),
    Plan(PREMIUM, 20, 5),
    # API-key plans (high-volume access, the seed's "API key requirements"): a key's token carries its plan as `tier`
    Plan(PARTNER_BASIC, 100, 5),
    Plan(PARTNER_PREMIUM, 1000, 20),
)


def plan_for(tier: str | None, plans: tuple[Plan, ...] = DEFAULT_PLANS, default_tier: str = DEFAULT_TIER) -> Plan:
    """The plan of a tier; an unknown or missing tier gets the default tier's plan (never more)."""
    by_tier = {p.tier: p for p in plans}
    return by_tier.get(tier or "") or by_tier[default_tier]


def occasion_extra(occasions: tuple[Occasion, ...], date: str) -> int:
    """Stories the operator adds on this local date (`YYYY-MM-DD` or recurring `MM-DD` entries)."""
    return sum(o.extra for o in occasions if o.date in (date, date[5:]))


def daily_limit(plan: Plan, occasions: tuple[Occasion, ...], date: str) -> int:
    return plan.daily + occasion_extra(occasions, date)
