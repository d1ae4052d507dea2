"""Copy sv-quota's daily counters from Redis into ``usage_daily`` (PostgreSQL): billing outlives Redis.

Idempotent: each row is upserted with GREATEST() of the stored and the Redis value (a counter only grows during
its day), so running the sync twice, from two workers at once, or after Redis lost a counter never double counts
and never lowers a figure. ``flask usage sync`` runs it once; with ``USAGE_SYNC_INTERVAL`` > 0 every worker runs a
daemon thread that syncs at most once per interval across the deployment (a Redis lock elects one worker).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from itertools import islice

import redis
from flask import Flask
from sqlalchemy import func
from sqlalchemy.dialects.postgresql import insert

from ..clock import now
from ..extensions import db, redis_store
from . import counters
from .models import UsageDaily

log = logging.getLogger(__name__)

BATCH = 500
LOCK_KEY = "sv:auth:v1:usage-sync:lock"


@dataclass(frozen=True)
class SyncResult:
    counters: int
    rows: int


def _batches(items, size: int):
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk


def sync_usage(client: redis.Redis | None = None, batch: int = BATCH) -> SyncResult:
    """Upsert every daily counter found in Redis; commits per batch. Returns what was read and written."""
    client = client or redis_store.client
    seen = rows = 0
    for chunk in _batches(counters.scan_counters(client), batch):
        values = counters.read(client, [c.key for c in chunk])
        ts = now()
        payload = [
            {
                "family_id": c.family_id,
                "scope": c.scope,
                "subject": c.subject,
                "day": c.day,
                "stories_used": v.used,
                "grants": v.grant,
                "synced_at": ts,
            }
            for c, v in zip(chunk, values, strict=True)
        ]
        seen += len(chunk)
        rows += _upsert(payload)
        db.session.commit()
    log.info("usage sync", extra={"event": "usage_sync", "counters": seen, "rows": rows})
    return SyncResult(seen, rows)


def _upsert(payload: list[dict]) -> int:
    if not payload:
        return 0
    stmt = insert(UsageDaily).values(payload)
    table = UsageDaily.__table__
    stmt = stmt.on_conflict_do_update(
        index_elements=[table.c.family_id, table.c.scope, table.c.subject, table.c.day],
        set_={
            "stories_used": func.greatest(table.c.stories_used, stmt.excluded.stories_used),
            "grants": func.greatest(table.c.grants, stmt.excluded.grants),
            "synced_at": stmt.excluded.synced_at,
        },
    )
    return db.session.execute(stmt).rowcount or 0


def sync_if_due(app: Flask, interval: int) -> SyncResult | None:
    """Run one sync unless another worker ran one within ``interval`` seconds (SET NX EX as the election)."""
    with app.app_context():
        if not redis_store.client.set(LOCK_KEY, "1", nx=True, ex=max(interval, 1)):
            return None
        try:
            return sync_usage()
        finally:
            db.session.remove()


def start_periodic_sync(app: Flask, interval: int) -> threading.Thread:
    """A daemon thread calling ``sync_if_due`` every ``interval`` seconds (errors are logged, never fatal)."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(interval):
            try:
                sync_if_due(app, interval)
            except Exception:  # a background loop must survive Redis/DB outages
                log.exception("usage sync failed")

    thread = threading.Thread(target=loop, name="usage-sync", daemon=True)
    thread.stop = stop  # type: ignore[attr-defined]
    thread.start()
    return thread
