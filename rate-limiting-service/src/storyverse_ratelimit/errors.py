"""One error shape: RFC 9457 ``application/problem+json`` with a stable ``code`` (the gateway's and the auth
service's shape), and no stack trace or 500 for bad input."""

from __future__ import annotations

import logging
from typing import Any

import redis
from apiflask import APIFlask, HTTPError
from flask import request
from sqlalchemy.exc import SQLAlchemyError
from storyverse_contracts.errors import PROBLEM_MIMETYPE, STATUS_CODES, UNAUTHENTICATED, UNAVAILABLE
from werkzeug.exceptions import HTTPException
from werkzeug.http import HTTP_STATUS_CODES

TYPE_BASE = "https://storyverse.dev/problems/"

log = logging.getLogger(__name__)


class APIError(HTTPError):
    """An HTTP error with a stable machine code."""

    def __init__(self, status: int, code: str, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(status, message=detail, headers=headers, extra_data={"code": code})
        self.code = code

    @classmethod
    def unauthenticated(cls, detail: str = "A valid bearer access token is required.") -> APIError:
        return cls(401, UNAUTHENTICATED, detail, {"WWW-Authenticate": 'Bearer error="invalid_token"'})

    @classmethod
    def forbidden(cls, code: str, detail: str) -> APIError:
        return cls(403, code, detail)

    @classmethod
    def not_found(cls, what: str) -> APIError:
        return cls(404, f"{what}_not_found", f"No such {what}.")

    @classmethod
    def unavailable(cls, detail: str) -> APIError:
        return cls(503, UNAVAILABLE, detail)


def problem(status: int, code: str, detail: str | None, errors: Any = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": TYPE_BASE + code,
        "title": HTTP_STATUS_CODES.get(status, "Error"),
        "status": status,
        "code": code,
        "instance": request.path,
    }
    if detail:
        body["detail"] = detail
    if errors:
        body["errors"] = errors
    request_id = request.headers.get("X-Request-Id")
    if request_id and len(request_id) <= 200:
        body["request_id"] = request_id
    return body


def _render(error: HTTPError):
    code = (error.extra_data or {}).get("code") or STATUS_CODES.get(error.status_code, "error")
    detail = error.message if isinstance(error.message, str) else None
    errors = error.detail if error.detail else None
    body = problem(error.status_code, code, detail, errors)
    return body, error.status_code, {**(error.headers or {}), "Content-Type": PROBLEM_MIMETYPE}


def register_error_handlers(app: APIFlask) -> None:
    app.error_processor(_render)

    @app.errorhandler(HTTPException)
    def _werkzeug(exc: HTTPException):
        status = exc.code or 500
        return _render(HTTPError(status, message=exc.description))

    @app.errorhandler(redis.RedisError)
    def _redis_down(exc: redis.RedisError):
        log.warning("redis unavailable: %s", type(exc).__name__)
        return _render(APIError.unavailable("Rate-limit storage is unavailable; try again shortly."))

    @app.errorhandler(SQLAlchemyError)
    def _database_down(exc: SQLAlchemyError):
        log.warning("database error: %s", type(exc).__name__)
        return _render(APIError.unavailable("The usage database is unavailable; try again shortly."))

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        log.exception("unhandled error")
        return _render(APIError(500, "internal_error", "Something went wrong on our side."))
