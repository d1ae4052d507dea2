"""Plan names: what a token's ``tier`` claim may say. The daily quota and burst of each plan are
``storyverse_plans`` (sv-quota and the rate limiting service read them); the auth service sells the family plans
and issues API keys on the partner plans (admins assign those) or on ``FAMILY_PLAN``.
"""

from __future__ import annotations

BASIC, PREMIUM = "basic", "premium"
PARTNER_BASIC, PARTNER_PREMIUM = "partner-basic", "partner-premium"

FAMILY_TIERS = (BASIC, PREMIUM)  # a family's plan (billing)
API_KEY_PLANS = (PARTNER_BASIC, PARTNER_PREMIUM)  # an API key's metering plan (its token's `tier`)
# An API key's plan that is not a tier: the key's tokens are metered by the owner's family plan (their `tier` is the
# family's tier at exchange time). The default, and the only plan a parent can give its own key.
FAMILY_PLAN = "family"
TIERS = FAMILY_TIERS + API_KEY_PLANS
DEFAULT_TIER = BASIC  # an unknown or missing tier is metered as this one (never more)
