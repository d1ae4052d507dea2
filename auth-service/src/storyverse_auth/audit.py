"""Append-only audit of session events in PostgreSQL (the system of record; sessions themselves live in Redis).

Events (login, refresh reuse, logout, revoke...) collect during a request and are written once its answer has gone
out (the WSGI server closes the response after sending it: ``flush``), in one INSERT on a connection of their own
with ``synchronous_commit = off``: PostgreSQL acknowledges the commit before its WAL flush, so the audit adds
neither a round trip nor an fsync to a request and never shares a transaction with account changes (whose commits
stay synchronous). A database crash can lose the last ~0.6 s of audit rows (3 × ``wal_writer_delay``), a worker
killed between its answer and the write that request's rows; a failed write is logged with the count of rows lost,
never turned into an error for a sign-in or revocation that already happened.

``SET LOCAL`` and the INSERT travel as one query string on an AUTOCOMMIT connection: PostgreSQL runs a
multi-statement query as one implicit transaction, so the setting holds for its commit and ends with it, and the
write is one round trip instead of four (BEGIN, SET, INSERT, COMMIT).
"""

from __future__ import annotations

import logging
import uuid
from functools import lru_cache

from flask import Response, g
from sqlalchemy import Engine, TextClause, bindparam, text
from sqlalchemy.exc import SQLAlchemyError

from .clock import now
from .extensions import db
from .models import SessionEvent

log = logging.getLogger(__name__)


def record(event: str, session_id: uuid.UUID, account_id: uuid.UUID | None, reason: str | None = None) -> None:
    row = {"at": now(), "event": event, "session_id": session_id, "account_id": account_id, "reason": reason}
    g.setdefault("sv_audit", []).append(row)


def flush(response: Response) -> Response:
    """after_request: the request's events are written when the response is closed, after it was sent."""
    rows = g.pop("sv_audit", None)
    if rows:
        engine = db.engine  # no app context is left when the server closes the response
        response.call_on_close(lambda: write(rows, engine))
    return response


def write(rows: list[dict], engine: Engine) -> None:
    params = {f"{name}_{i}": row[name] for i, row in enumerate(rows) for name in COLUMNS}
    try:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(_insert(len(rows)), params)
    except SQLAlchemyError as exc:
        log.error("session audit write failed", extra={"error_type": type(exc).__name__, "count": len(rows)})


COLUMNS = ("at", "event", "session_id", "account_id", "reason")
ASYNC_COMMIT = "SET LOCAL synchronous_commit TO OFF; "


@lru_cache(maxsize=32)
def _insert(count: int) -> TextClause:
    """``count`` rows, typed as SessionEvent's columns, after ASYNC_COMMIT in the same query string."""
    table = SessionEvent.__table__
    values = ", ".join("(" + ", ".join(f":{name}_{i}" for name in COLUMNS) + ")" for i in range(count))
    params = [bindparam(f"{name}_{i}", type_=table.c[name].type) for i in range(count) for name in COLUMNS]
    # Only constants and placeholders are spliced in (the table's and columns' names); every value is bound.
    sql = f"{ASYNC_COMMIT}INSERT INTO {table.name} ({', '.join(COLUMNS)}) VALUES {values}"  # noqa: S608
    return text(sql).bindparams(*params)
