"""Named problems for plans and the billing webhook (rendered by errors.py, RFC 9457)."""

from __future__ import annotations

from ..errors import APIError


def plan_unchanged(plan: str) -> APIError:
    return APIError(409, "plan_unchanged", f"The family is already on the {plan} plan.")


def webhook_unconfigured() -> APIError:
    return APIError(503, "billing_unconfigured", "No billing webhook secret is configured; events are refused.")


def invalid_signature(reason: str) -> APIError:
    detail = {
        "malformed": "The Billing-Signature header is missing or malformed.",
        "stale": "The signature timestamp is outside the accepted window.",
        "mismatch": "The signature does not match the body.",
    }[reason]
    return APIError(400, "invalid_signature", detail)
