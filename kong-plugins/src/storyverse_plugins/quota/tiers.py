"""Plans, special occasions and the family's day: one source shared with the rate limiting service, the
dependency-free ``storyverse_plans`` package (plans/ in the repository). Re-exported here for the plugin's modules."""

from __future__ import annotations

from storyverse_plans.calendar import Day, local_day, zone
from storyverse_plans.plans import DEFAULT_PLANS, Occasion, Plan, daily_limit, occasion_extra

__all__ = ["DEFAULT_PLANS", "Day", "Occasion", "Plan", "daily_limit", "local_day", "occasion_extra", "zone"]
