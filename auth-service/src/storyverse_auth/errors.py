"""One error shape: RFC 9457 ``application/problem+json`` with a stable ``code`` and the ``request_id``."""

from __future__ import annotations

import logging
from typing import Any

import redis
from apiflask import APIFlask, HTTPError
from flask import g, request
from sqlalchemy.exc import OperationalError
from storyverse_contracts.errors import (
    INVALID_TOKEN,
    PROBLEM_MIMETYPE,
    STATUS_CODES,
    TOKEN_EXPIRED,
    TOKEN_REVOKED,
    UNAVAILABLE,
)
from werkzeug.exceptions import HTTPException
from werkzeug.http import HTTP_STATUS_CODES

TYPE_BASE = "https://storyverse.dev/problems/"

log = logging.getLogger(__name__)

PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["type", "title", "status", "code"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "code": {"type": "string"},
        "request_id": {"type": "string"},
        "errors": {"type": "object"},
    },
}


class APIError(HTTPError):
    """An HTTP error with a stable machine code. Use the named constructors."""

    def __init__(self, status: int, code: str, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(status, message=detail, headers=headers, extra_data={"code": code})
        self.code = code

    @classmethod
    def invalid_credentials(cls) -> APIError:
        return cls(401, "invalid_credentials", "The e-mail address or password is incorrect.")

    @classmethod
    def unauthenticated(cls, detail: str = "A valid bearer access token is required.") -> APIError:
        return cls(401, INVALID_TOKEN, detail, {"WWW-Authenticate": 'Bearer error="invalid_token"'})

    @classmethod
    def token_expired(cls) -> APIError:
        return cls(
            401, TOKEN_EXPIRED, "The access token has expired.", {"WWW-Authenticate": 'Bearer error="invalid_token"'}
        )

    @classmethod
    def token_revoked(cls) -> APIError:
        return cls(
            401,
            TOKEN_REVOKED,
            "The access token has been revoked.",
            {"WWW-Authenticate": 'Bearer error="invalid_token"'},
        )

    @classmethod
    def invalid_refresh_token(cls) -> APIError:
        return cls(401, "invalid_refresh_token", "The refresh token is invalid, expired or revoked.")

    @classmethod
    def refresh_token_reused(cls) -> APIError:
        return cls(401, "refresh_token_reused", "A rotated refresh token was reused; the session has been revoked.")

    @classmethod
    def invalid_reset_token(cls) -> APIError:
        return cls(400, "invalid_reset_token", "The password reset token is invalid, used or expired.")

    @classmethod
    def weak_password(cls, reason: str) -> APIError:
        return cls(422, "weak_password", reason)

    @classmethod
    def session_not_found(cls) -> APIError:
        return cls(404, "session_not_found", "No such session.")

    @classmethod
    def throttled(cls, retry_after: int) -> APIError:
        return cls(
            429,
            "too_many_attempts",
            "Too many failed attempts; retry later.",
            {"Retry-After": str(max(retry_after, 1))},
        )

    @classmethod
    def bad_request(cls, detail: str) -> APIError:
        return cls(400, "bad_request", detail)

    @classmethod
    def unsupported_media_type(cls) -> APIError:
        return cls(415, "unsupported_media_type", "Request bodies must be application/json.")

    @classmethod
    def unavailable(cls, detail: str) -> APIError:
        return cls(503, UNAVAILABLE, detail)


def problem(status: int, code: str, detail: str | None, errors: Any = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": f"{TYPE_BASE}{code}",
        "title": HTTP_STATUS_CODES.get(status, "Error"),
        "status": status,
        "code": code,
        "instance": request.path,
        "request_id": g.get("request_id", ""),
    }
    if detail:
        body["detail"] = detail
    if errors:
        body["errors"] = errors
    return body


def _render(error: HTTPError):
    status = error.status_code
    code = error.extra_data.get("code") or STATUS_CODES.get(status, "error")
    detail = error.message if isinstance(error.message, str) else None
    errors = error.detail if isinstance(error.detail, dict) and error.detail else None
    if status == 422 and errors is not None and code == "validation_failed":
        detail = "The request body or parameters failed validation."
    headers = {k: v for k, v in (error.headers or {}).items() if k.lower() != "content-type"}
    headers["Content-Type"] = PROBLEM_MIMETYPE
    return problem(status, code, detail, errors), status, headers


def register_error_handlers(app: APIFlask) -> None:
    app.error_processor(_render)

    @app.errorhandler(HTTPException)
    def _werkzeug(exc: HTTPException):
        headers = {k: v for k, v in exc.get_headers() if k.lower() != "content-type"}
        status = exc.code or 500
        return _render(HTTPError(status, message=exc.description or exc.name, headers=headers))

    @app.errorhandler(redis.RedisError)
    def _redis_down(exc: redis.RedisError):
        log.error("redis unavailable", extra={"error_type": type(exc).__name__})
        return _render(APIError.unavailable("A backing service is unavailable; retry shortly."))

    @app.errorhandler(OperationalError)
    def _database_down(exc: OperationalError):
        log.error("database unavailable", extra={"error_type": type(exc).__name__})
        return _render(APIError.unavailable("A backing service is unavailable; retry shortly."))

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        if isinstance(exc, HTTPException):
            return _werkzeug(exc)
        log.exception("unhandled error", extra={"error_type": type(exc).__name__})
        return _render(HTTPError(500, message="An unexpected error occurred."))
