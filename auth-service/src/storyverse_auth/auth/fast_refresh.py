"""``POST /api/auth/refresh`` without Flask's request dispatch, for the request every client makes most (issue 17).

A refresh is one Redis script and one signature (sessions/service.py); around them Flask's dispatch (request
context, URL matching, the before/after hooks, apiflask's wrappers) cost about as much again. This WSGI layer sits
under ProxyFix and answers the common request itself:

- it takes only what the Flask path would take as is: ``POST``, this exact path, no query string, a JSON media type,
  a ``Content-Length`` of at most ``MAX_BODY`` bytes, no ``Transfer-Encoding``, no ``Authorization``, a client
  address that is an IP, and a body that is exactly ``{"refresh_token": "<string of at most 512 characters>"}``
  written in printable ASCII without escapes. Anything else goes to Flask untouched (the body put back), where the
  hooks and the view decide as they always did;
- it rotates inside an app context, and on success writes what the Flask path writes: the same body
  (``tokens.responses.refresh_body``), ``Content-Type``, ``Cache-Control: no-store``, ``X-Request-Id``, the access
  log line and the request metrics (``logs.access_line``, ``metrics.observe_request``);
- any other outcome (a refused token, a reuse, Redis or PostgreSQL down, an unexpected error) is handed to Flask in
  ``environ[OUTCOME]``, still inside that app context (Flask reuses it, so audit rows queued by the rotation are
  flushed by the usual hook, and the request id and start time it chose are kept: the access line and latency
  include the rotation): the view renders it instead of rotating again, so every error answer is the Flask
  path's own.

``REFRESH_FAST_PATH=false`` sends every request through Flask; tests/auth_service/test_auth_fast_refresh.py compares
the two answer by answer.
"""

from __future__ import annotations

import io
import ipaddress
import json
import time
from collections.abc import Callable, Iterable
from functools import lru_cache
from typing import Any

from flask import Flask, g

from .. import logs, metrics
from ..sessions import service as sessions
from ..tokens.access import issue_access_token
from ..tokens.responses import refresh_body

PATH = "/api/auth/refresh"
OUTCOME = "storyverse.refresh_outcome"
MAX_BODY = 1024
MAX_REFRESH_TOKEN = 512  # RefreshIn's limit
_JSON_TYPES = frozenset({"application/json", "application/json; charset=utf-8", "application/json;charset=utf-8"})
_PRINTABLE = frozenset(range(0x20, 0x7F))

WSGIApp = Callable[[dict, Callable], Iterable[bytes]]


def outcome(environ: dict) -> sessions.Rotation | None:
    """The rotation the fast path already made for this request (None: rotate as usual); re-raises its error."""
    found = environ.pop(OUTCOME, None)
    if isinstance(found, BaseException):
        raise found
    return found


class FastRefresh:
    def __init__(self, app: Flask, wsgi_app: WSGIApp) -> None:
        self.app, self.wsgi_app = app, wsgi_app

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        if not self.app.config["REFRESH_FAST_PATH"] or not _candidate(environ):
            return self.wsgi_app(environ, start_response)
        started = time.perf_counter()  # where Flask's before_request hooks start their clocks: before the body
        raw = environ["wsgi.input"].read(int(environ["CONTENT_LENGTH"]))
        environ["wsgi.input"] = io.BytesIO(raw)  # Flask reads it again if the request goes there
        token = _token(raw)
        if token is None:
            return self.wsgi_app(environ, start_response)
        with self.app.app_context():
            g.request_id = logs.request_id_from(environ.get("HTTP_X_REQUEST_ID", ""))
            # a handed-over outcome's access line and latency include the rotation (a Redis stall included)
            logs.clock_started(started)
            metrics.clock_started(started)
            try:
                result = sessions.rotate(token)
                body = None if result.error is not None else _answer(result)
            except Exception as exc:  # noqa: BLE001 (handed to Flask's error handlers, which log and render it)
                result, body = exc, None
            if body is None:
                environ[OUTCOME] = result
                return self.wsgi_app(environ, start_response)
            metrics.observe_request(PATH, "POST", 200, started)
            logs.access_line("POST", PATH, 200, started)
            headers = [
                ("Content-Type", "application/json"),
                ("Content-Length", str(len(body))),
                ("Cache-Control", "no-store"),  # Flask's order: its after_request hooks run last-registered first
                ("X-Request-Id", g.request_id),
            ]
        start_response("200 OK", headers)
        return [body]


def _candidate(environ: dict) -> bool:
    length = environ.get("CONTENT_LENGTH", "")
    return (
        environ.get("PATH_INFO") == PATH
        and environ.get("REQUEST_METHOD") == "POST"
        and not environ.get("QUERY_STRING")
        and environ.get("CONTENT_TYPE", "").lower() in _JSON_TYPES
        and length.isascii()  # "²".isdigit() is True and int("²") raises; Werkzeug reads it as no length
        and length.isdigit()
        and 0 < int(length) <= MAX_BODY
        and "HTTP_TRANSFER_ENCODING" not in environ
        and "HTTP_AUTHORIZATION" not in environ
        and _is_ip(environ.get("REMOTE_ADDR"))
    )


@lru_cache(maxsize=4096)  # clients refresh from the same few addresses; parsing one costs as much as the HMAC
def _is_ip(address: str | None) -> bool:
    try:
        ipaddress.ip_address(address or "")
    except ValueError:
        return False
    return True


def _token(raw: bytes) -> str | None:
    """The refresh token of a body that is exactly ``{"refresh_token": "..."}`` in printable ASCII without
    escapes (so the input guard has nothing to refuse and the view's own check would take it), else None."""
    if b"\\" in raw or not _PRINTABLE.issuperset(raw.strip(b" \t\r\n")):
        return None
    try:
        document: Any = json.loads(raw)
    except ValueError:
        return None
    if type(document) is not dict or len(document) != 1:
        return None
    token = document.get("refresh_token")
    return token if type(token) is str and 0 < len(token) <= MAX_REFRESH_TOKEN else None


def _answer(result: sessions.Rotation) -> bytes:
    assert result.principal is not None and result.session_id is not None and result.refresh_token is not None
    access = issue_access_token(result.principal, str(result.session_id), amr=result.amr)
    metrics.inc("sv_auth_tokens_issued_total", kind="access")
    return refresh_body(access, result.refresh_token, result.session_id).encode()
