"""Gunicorn's access and error logs without tokens or secrets (issue 15, item 8).

Gunicorn's default access line carries the raw request line (query string included, so ``?access_token=``), the
Referer (which can hold a page URL with a code or token) and, in custom formats, any request header
(``%({authorization}i)s``). ``RedactingLogger`` keeps the format but hands it atoms with the query string, the
Referer's query and every credential-bearing header replaced, whatever ``access_log_format`` says; its error log
strips query strings from the request URIs gunicorn puts in its messages ("Error handling request /path?…").
``gunicorn.conf.py`` next to ``wsgi.py`` selects it.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from gunicorn.glogging import Logger

REDACTED = "[redacted]"
_SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key"})
_QUERY = re.compile(r"\?[^\s\"']*")


def strip_query(value: Any) -> Any:
    """``/path?access_token=x`` → ``/path?[redacted]``; values without a query (and non-strings) are unchanged."""
    if not isinstance(value, str) or "?" not in value:
        return value
    return _QUERY.sub("?" + REDACTED, value)


class _StripQueries(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = strip_query(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(strip_query(arg) for arg in record.args)
        return True


class RedactingLogger(Logger):
    """Gunicorn's logger with credential-free atoms and query-free error messages."""

    def __init__(self, cfg) -> None:
        super().__init__(cfg)
        self.error_log.addFilter(_StripQueries())

    def atoms(self, resp, req, environ, request_time) -> dict[str, Any]:
        atoms = super().atoms(resp, req, environ, request_time)
        method, protocol = environ.get("REQUEST_METHOD", "-"), environ.get("SERVER_PROTOCOL", "-")
        query = "?" + REDACTED if environ.get("QUERY_STRING") else ""
        atoms["r"] = f"{method} {environ.get('PATH_INFO', '')}{query} {protocol}"
        atoms["q"] = query[1:]
        atoms["f"] = strip_query(atoms.get("f", "-"))
        atoms["u"] = "-"  # Basic credentials' user part (an OAuth client id, or an e-mail): not needed in access logs
        for key in list(atoms):
            if key.startswith("{") and key.endswith("}i") and key[1:-2] in _SECRET_HEADERS:
                atoms[key] = REDACTED
            elif key.startswith("{") and key.endswith("}i"):
                atoms[key] = strip_query(atoms[key])
        return atoms
