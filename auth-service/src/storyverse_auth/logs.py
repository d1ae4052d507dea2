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

from flask import Flask, Response, g, has_request_context, request

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._\-]{1,64}$")
_SAFE_EXTRA = ("event", "account_id", "session_id", "status", "method", "path", "duration_ms", "subject", "reason")
_SAFE_EXTRA += ("error_type", "kid", "outcome", "scope", "count", "user_id")


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if has_request_context():
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


def _start() -> None:
    incoming = request.headers.get("X-Request-Id", "")
    g.request_id = incoming if _REQUEST_ID.match(incoming) else uuid.uuid4().hex
    g.started = time.perf_counter()


def _finish(response: Response) -> Response:
    response.headers["X-Request-Id"] = g.get("request_id", "")
    started = g.get("started")
    fields = {
        "method": request.method,
        "path": request.path,
        "status": response.status_code,
        "duration_ms": round((time.perf_counter() - started) * 1000, 2) if started else None,
    }
    claims = g.get("flask_httpauth_user")  # set by the bearer check of the service's own endpoints
    if isinstance(claims, dict) and claims.get("sub"):
        fields["user_id"] = claims["sub"]
    logging.getLogger("storyverse_auth.access").info("request", extra=fields)
    return response
