"""JSON log lines on stderr: one per request (logger ``storyverse_ratelimit.access``) and the service's events.

The request line carries method, path (never the query string), status, duration, the gateway's ``X-Request-Id``
and, once a bearer check passed, the caller's ``user_id``. Only allow-listed ``extra`` fields are written: never
tokens, bodies or headers. gunicorn's own access log stays off (the chart's GUNICORN_CMD_ARGS), so a request is
logged once.
"""

from __future__ import annotations

import json
import logging
import re
import time

from flask import Flask, Response, g, request

FIELDS = ("request_id", "method", "path", "status", "duration_ms", "user_id")
FIELDS += ("event", "account_id", "counters", "rows", "occasions", "lifted", "date")
_REQUEST_ID = re.compile(r"[A-Za-z0-9._\-]{1,64}")
access = logging.getLogger("storyverse_ratelimit.access")


class JSONLines(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {"ts": round(record.created, 3), "level": record.levelname.lower(), "logger": record.name}
        line["msg"] = record.getMessage()
        line.update({key: record.__dict__[key] for key in FIELDS if key in record.__dict__})
        if record.exc_info and record.exc_info[0] is not None:
            line["exc_type"] = record.exc_info[0].__name__
        return json.dumps(line, default=str)


def init_app(app: Flask, level: str = "INFO") -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JSONLines())
    package = logging.getLogger("storyverse_ratelimit")
    package.handlers[:] = [handler]
    package.setLevel(level)
    package.propagate = False
    for name, logger in logging.root.manager.loggerDict.items():  # a fileConfig elsewhere (alembic) disables them
        if name.startswith("storyverse_ratelimit") and isinstance(logger, logging.Logger):
            logger.disabled = False
    app.before_request(_start)
    app.after_request(_request_line)


def _start() -> None:
    g.sv_log_started = time.perf_counter()


def _request_line(response: Response) -> Response:
    incoming = request.headers.get("X-Request-Id", "")
    started = g.pop("sv_log_started", None)
    fields = {
        "request_id": incoming if _REQUEST_ID.fullmatch(incoming) else None,
        "method": request.method,
        "path": request.path,
        "status": response.status_code,
        "duration_ms": round((time.perf_counter() - started) * 1000, 2) if started is not None else None,
    }
    claims = g.get("claims")
    if isinstance(claims, dict) and claims.get("sub"):
        fields["user_id"] = claims["sub"]
    access.info("request", extra=fields)
    return response
