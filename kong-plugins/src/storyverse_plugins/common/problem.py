"""RFC 9457 problem documents: the one error shape clients see from Kong, the plugins and the auth service."""

from __future__ import annotations

from typing import Any

PROBLEM_JSON = "application/problem+json"
TYPE_BASE = "https://docs.storyverse.example/problems/"

TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


def problem(
    status: int,
    code: str,
    detail: str,
    *,
    instance: str | None = None,
    request_id: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """The body: `type` is derived from the stable `code` so clients can switch on either."""
    body: dict[str, Any] = {
        "type": TYPE_BASE + code.replace("_", "-"),
        "title": TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
        "code": code,
    }
    if instance is not None:
        body["instance"] = instance
    if request_id is not None:
        body["request_id"] = request_id
    body.update(extra)
    return body
