"""Plans and policies shared by the sv-quota plugin (the per-request decision) and the rate limiting service (usage,
grants, special occasions, abuse administration, gauges). Pure data and calendar math: no Redis client, no PDK, no
third-party import (only storyverse_contracts), so both images carry it for free.

- ``plans``: tiers (daily story quota, rate-limit burst), special occasions, the daily limit of a date
- ``calendar``: the family's local day and its next midnight (a quota never resets in the middle of bedtime)
The plan names and the Redis key layout of sv-quota's counters, abuse blocks and runtime occasions are
``storyverse_contracts`` (tiers, keys): this package adds the numbers and the calendar.
"""

from storyverse_plans.calendar import Day, local_day, zone
from storyverse_plans.plans import DEFAULT_PLANS, Occasion, Plan, daily_limit, occasion_extra, plan_for

__all__ = [
    "DEFAULT_PLANS",
    "Day",
    "Occasion",
    "Plan",
    "daily_limit",
    "local_day",
    "occasion_extra",
    "plan_for",
    "zone",
]
