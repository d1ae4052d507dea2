"""Named problem constructors for API keys, usage and admin endpoints (rendered by errors.py, RFC 9457)."""

from __future__ import annotations

from ..errors import APIError


def invalid_api_key() -> APIError:
    return APIError(
        401, "invalid_api_key", "The API key is invalid or revoked.", {"WWW-Authenticate": 'ApiKey error="invalid_key"'}
    )


def api_key_not_found() -> APIError:
    return APIError(404, "api_key_not_found", "No such API key.")


def api_key_limit(limit: int) -> APIError:
    return APIError(409, "api_key_limit", f"An account can hold at most {limit} live API keys.")


def plan_not_allowed(plan: str) -> APIError:
    return APIError(403, "plan_not_allowed", f"The plan '{plan}' can only be assigned by an administrator.")


def unknown_plan(plan: str) -> APIError:
    return APIError(422, "unknown_plan", f"There is no API-key plan '{plan}'.")


def scope_not_granted(scope: str) -> APIError:
    return APIError(403, "insufficient_scope", f"The API key does not grant '{scope}'.")


def api_key_token_not_allowed() -> APIError:
    return APIError(403, "api_key_token_not_allowed", "A token exchanged from an API key cannot use this endpoint.")


def key_owner_only() -> APIError:
    return APIError(403, "key_owner_only", "Only parents and administrators can hold API keys.")


def admin_only() -> APIError:
    return APIError(403, "admin_only", "This endpoint is for administrators.")
