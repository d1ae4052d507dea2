"""Append-only audit of session events in PostgreSQL (the system of record; sessions themselves live in Redis).

Events (login, refresh reuse, logout, revoke...) collect during a request and are written after it in one INSERT on
a connection of their own with ``synchronous_commit = off``: PostgreSQL acknowledges the commit before its WAL
flush, so the audit never adds an fsync to a request and never shares a transaction with account changes (whose
commits stay synchronous). A database crash can lose the last ~0.6 s of audit rows (3 × ``wal_writer_delay``);
a failed write is logged and counted, never turned into an error for a sign-in or revocation that already happened.
"""

from __future__ import annotations

import logging
import uuid

from flask import Response, g
from sqlalchemy import insert, text
from sqlalchemy.exc import SQLAlchemyError

from .clock import now
from .extensions import db
from .models import SessionEvent

log = logging.getLogger(__name__)


def record(event: str, session_id: uuid.UUID, account_id: uuid.UUID | None, reason: str | None = None) -> None:
    row = {"at": now(), "event": event, "session_id": session_id, "account_id": account_id, "reason": reason}
    g.setdefault("sv_audit", []).append(row)


def flush(response: Response) -> Response:
    rows = g.pop("sv_audit", None)
    if rows:
        write(rows)
    return response


def write(rows: list[dict]) -> None:
    try:
        with db.engine.begin() as conn:
            conn.execute(text("SET LOCAL synchronous_commit TO OFF"))
            conn.execute(insert(SessionEvent), rows)
    except SQLAlchemyError as exc:
        log.error("session audit write failed", extra={"error_type": type(exc).__name__, "count": len(rows)})
