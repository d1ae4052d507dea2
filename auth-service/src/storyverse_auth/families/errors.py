"""Named problem constructors for families, children and device sign-in (rendered by errors.py, RFC 9457).

Another family's child is always ``404 child_not_found`` (never a 403 that would confirm it exists). The device
token endpoint answers with the RFC 8628 / RFC 6749 §5.2 error names as ``code`` (status 400).
"""

from __future__ import annotations

from ..errors import APIError


def parent_only() -> APIError:
    return APIError(403, "parent_only", "Only a parent of the family can manage its accounts.")


def child_not_found() -> APIError:
    return APIError(404, "child_not_found", "No such child profile.")


def username_taken() -> APIError:
    return APIError(409, "username_taken", "This username is already used in your family.")


def child_limit_reached(limit: int) -> APIError:
    return APIError(409, "child_limit_reached", f"A family can have at most {limit} child profiles.")


def family_full(limit: int) -> APIError:
    return APIError(409, "family_full", f"A family can have at most {limit} parents.")


def invalid_invitation() -> APIError:
    return APIError(400, "invalid_invitation", "The invitation is invalid, used or expired.")


def email_taken() -> APIError:
    return APIError(409, "email_taken", "This e-mail address already has an account; it cannot join another family.")


def invalid_birth_year(low: int, high: int) -> APIError:
    return APIError(422, "invalid_birth_year", f"A child profile needs a birth year from {low} to {high}.")


def daily_limit_above_tier(limit: int) -> APIError:
    return APIError(422, "daily_limit_above_tier", f"The daily story limit cannot exceed the tier's {limit}.")


def weak_pin() -> APIError:
    return APIError(422, "weak_pin", "The PIN is too easy to guess (repeated or consecutive digits).")


def invalid_child_credentials() -> APIError:
    return APIError(401, "invalid_credentials", "The family code, username or PIN is incorrect.")


def profile_inactive() -> APIError:
    return APIError(403, "profile_inactive", "This profile is waiting for a parent to give consent.")


def consent_required() -> APIError:
    return APIError(409, "consent_required", "Record parental consent for this child first.")


def invalid_user_code() -> APIError:
    return APIError(400, "invalid_user_code", "The code is unknown, already used or expired.")


def device_error(code: str) -> APIError:
    """authorization_pending, slow_down, access_denied, expired_token or invalid_grant (RFC 8628 §3.5)."""
    return APIError(400, code, _DEVICE_DETAILS[code])


_DEVICE_DETAILS = {
    "authorization_pending": "The parent has not approved this device yet; keep polling.",
    "slow_down": "Polling too fast; the interval has been increased by 5 seconds.",
    "access_denied": "The parent denied this sign-in.",
    "expired_token": "The device code has expired; start again.",
    "invalid_grant": "The device code is invalid or was already used.",
}
