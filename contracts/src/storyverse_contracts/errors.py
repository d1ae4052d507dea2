"""The parts of the error format (RFC 9457 ``application/problem+json`` with a stable ``code``) that more than one
service produces. A service's own codes (``child_not_found``, ``forbidden_role``...) stay with the service.
"""

from __future__ import annotations

PROBLEM_MIMETYPE = "application/problem+json"

# Codes the gateway (sv-jwt) and the services that verify tokens themselves answer with (codes, not secrets).
UNAUTHENTICATED = "unauthenticated"  # no usable bearer token
INVALID_TOKEN = "invalid_token"  # noqa: S105  a token that failed verification
TOKEN_EXPIRED = "token_expired"  # noqa: S105
TOKEN_REVOKED = "token_revoked"  # noqa: S105  the revocation keys (keys.revoked_*) name it or its session
FORBIDDEN = "forbidden"
UNAVAILABLE = "unavailable"  # a dependency (database, Redis, signing keys) is down: 503, try again
VALIDATION_FAILED = "validation_failed"

# The code of an error raised without one, by HTTP status (the Flask services' fallback).
STATUS_CODES = {
    400: "bad_request",
    401: INVALID_TOKEN,
    403: FORBIDDEN,
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: VALIDATION_FAILED,
    429: "too_many_requests",
    500: "internal_error",
    503: UNAVAILABLE,
}
