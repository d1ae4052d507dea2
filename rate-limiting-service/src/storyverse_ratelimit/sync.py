"""The usage pipeline: sv-quota's daily counters (Redis) into ``usage_daily`` (PostgreSQL), on the service's own
schedule, so billing outlives Redis and nobody has to run a command.

Idempotent: each row is upserted with GREATEST() of the stored and the Redis value (a counter only grows during its
day), so running the sync twice, from two pods at once, or after Redis lost a counter never double counts and never
lowers a figure. Every pod runs a daemon thread; a Redis lock (SET NX EX) elects one run per interval across the
deployment. The same pass applies the special occasions (occasions.sweep) to the counters it reads and stores the
quota gauges' summary (gauges.QuotaSummary).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from dataclasses import dataclass
from itertools import islice

import redis
from flask import Flask
from sqlalchemy import func
from sqlalchemy.dialects.postgresql import insert

from . import counters, directory, gauges, occasions
from .extensions import db, redis_store
from .models import UsageDaily

log = logging.getLogger(__name__)

BATCH = 500
LOCK_KEY = "sv:ratelimit:v1:usage-sync:lock"


@dataclass(frozen=True)
class SyncResult:
    counters: int
    rows: int
    occasions_applied: int = 0


def _batches(items, size: int):
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk


def sync_usage(client: redis.Redis | None = None, batch: int = BATCH) -> SyncResult:
    """Apply occasions to, then upsert, every daily counter found in Redis; commits per batch."""
    client = client or redis_store.client
    special = occasions.all_occasions(client)
    summary = gauges.QuotaSummary()
    seen = rows = applied = 0
    for chunk in _batches(counters.scan_counters(client), batch):
        values = counters.read(client, [c.key for c in chunk])
        if special or any(v.occasion for v in values):
            applied += occasions.sweep(client, chunk, values, special)
            values = counters.read(client, [c.key for c in chunk])
        tiers = directory.tiers(sorted({c.family_id for c in chunk if c.family_id}))
        for c, v in zip(chunk, values, strict=True):
            summary.add(c, v, tiers.get(c.family_id))
        ts = dt.datetime.now(dt.UTC)
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
    gauges.store(client, summary)
    level = logging.INFO if rows or applied else logging.DEBUG  # an idle pass every interval is not news
    log.log(level, "usage sync", extra={"event": "usage_sync", "counters": seen, "rows": rows, "occasions": applied})
    return SyncResult(seen, rows, applied)


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
    """Run one sync unless another pod or worker ran one within ``interval`` seconds (SET NX EX elects one)."""
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
            except Exception:  # a background loop must survive Redis/DB outages; the next pass retries
                log.exception("usage sync failed")

    thread = threading.Thread(target=loop, name="usage-sync", daemon=True)
    thread.stop = stop  # type: ignore[attr-defined]
    thread.start()
    return thread
