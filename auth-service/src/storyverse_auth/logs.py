"""Structured JSON logs with a request id. Only allow-listed fields are emitted: never bodies, tokens or secrets.

One line per request (logger ``storyverse_auth.access``) with method, path, status, duration and, once the bearer
check has passed, the caller's ``user_id`` (the token's ``sub``). gunicorn's own access log is off (the chart's and
the image's GUNICORN_CMD_ARGS), so a request is logged once.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid

from flask import Flask, Response, g, has_app_context, has_request_context, request

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._\-]{1,64}$")
_SAFE_EXTRA = ("event", "account_id", "session_id", "status", "method", "path", "duration_ms", "subject", "reason")
_SAFE_EXTRA += ("error_type", "kid", "outcome", "scope", "count", "user_id")
_ACCESS = logging.getLogger("storyverse_auth.access")


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if has_request_context() or (has_app_context() and "request_id" in g):  # fast_refresh.py: no request ctx
            out["request_id"] = g.get("request_id")
        for key in _SAFE_EXTRA:
            if key in record.__dict__:
                out[key] = record.__dict__[key]
        if record.exc_info and record.exc_info[0] is not None:
            out["exc_type"] = record.exc_info[0].__name__
        return json.dumps(out, default=str)


def configure(app: Flask) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JSONFormatter())
    root = logging.getLogger("storyverse_auth")
    root.handlers[:] = [handler]
    root.setLevel(app.config["LOG_LEVEL"])
    root.propagate = False
    app.before_request(_start)
    app.after_request(_finish)


def request_id_from(incoming: str) -> str:
    """The caller's X-Request-Id when it is a plain token (Kong's), else a new one."""
    return incoming if _REQUEST_ID.match(incoming) else uuid.uuid4().hex


def clock_started(started: float) -> None:
    """The request began at ``started`` (``time.perf_counter()``): fast_refresh.py, before handing a request over."""
    g.started = started


def _start() -> None:
    if "request_id" not in g:  # fast_refresh.py may have chosen it already, in the same app context
        g.request_id = request_id_from(request.headers.get("X-Request-Id", ""))
    if "started" not in g:  # ... and started the clock (logs.clock_started)
        g.started = time.perf_counter()


def access_line(method: str, path: str, status: int, started: float | None, user_id: str | None = None) -> None:
    """The one access log line of a request (logger ``storyverse_auth.access``)."""
    if not _ACCESS.isEnabledFor(logging.INFO):
        return
    fields = {
        "method": method,
        "path": path,
        "status": status,
        "duration_ms": round((time.perf_counter() - started) * 1000, 2) if started else None,
    }
    if user_id:
        fields["user_id"] = user_id
    _ACCESS.info("request", extra=fields)


def _finish(response: Response) -> Response:
    response.headers["X-Request-Id"] = g.get("request_id", "")
    claims = g.get("flask_httpauth_user")  # set by the bearer check of the service's own endpoints
    user_id = claims.get("sub") if isinstance(claims, dict) else None
    access_line(request.method, request.path, response.status_code, g.get("started"), user_id)
    return response
