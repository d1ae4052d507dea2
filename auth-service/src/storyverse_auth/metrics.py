"""Prometheus counters kept in one Redis hash, so every gunicorn worker reports the same totals.

Writes are batched per process: a request's increments join the process's pending batch, which goes to Redis in one
pipeline at most every ``METRICS_FLUSH_INTERVAL`` seconds (default 1) or once ``METRICS_FLUSH_MAX`` increments are
pending, whichever comes first, and always before this process renders ``/metrics`` and when it exits. A flusher
thread per process sends the batch of an idle worker, so another worker's ``/metrics`` lags by at most the interval.
Each worker adds its own deltas (HINCRBY), so totals across workers stay exact. ``METRICS_FLUSH_INTERVAL = 0`` (the
testing default) writes at the end of every request, as before.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import weakref

import redis
from flask import Response, current_app, g, has_app_context, has_request_context

from .extensions import redis_store
from .keys import METRICS_KEY

log = logging.getLogger(__name__)

COUNTERS: dict[str, str] = {
    "sv_auth_logins_total": "Login attempts by outcome (success, failure, throttled).",
    "sv_auth_tokens_issued_total": "Tokens issued by kind (access, refresh).",
    "sv_auth_failed_attempts_total": "Failed authentication attempts by reason.",
    "sv_auth_refresh_reuse_total": "Reuse of a rotated refresh token detected (session revoked).",
    "sv_auth_password_resets_total": "Password reset events by stage (requested, completed).",
}
DEFAULT_FLUSH_INTERVAL = 1.0
DEFAULT_FLUSH_MAX = 1000


def _field(name: str, labels: dict[str, str]) -> str:
    if not labels:
        return name
    inner = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return f"{name}{{{inner}}}"


class Batch:
    """One process's pending increments for one app (thread-safe; re-armed after a fork)."""

    def __init__(self, client: redis.Redis, interval: float, max_pending: int) -> None:
        self.client, self.interval, self.max_pending = client, interval, max_pending
        self._lock = threading.Lock()
        self._pending: dict[str, int] = {}
        self._count = 0
        self._due = time.monotonic() + interval
        self._pid = 0  # the process whose flusher thread runs

    def add(self, pending: dict[str, int]) -> None:
        with self._lock:
            for field, amount in pending.items():
                self._pending[field] = self._pending.get(field, 0) + amount
            self._count += len(pending)
            due = self._count >= self.max_pending or time.monotonic() >= self._due
            if self._pid != os.getpid():
                self._start_flusher()
        if due:
            self.flush()

    def flush(self) -> None:
        with self._lock:
            pending, self._pending, self._count = self._pending, {}, 0
            self._due = time.monotonic() + self.interval
        if pending:
            _write(pending, self.client)

    def _start_flusher(self) -> None:
        self._pid = os.getpid()
        ref = weakref.ref(self)

        def loop() -> None:
            while (batch := ref()) is not None:
                interval = batch.interval
                del batch
                time.sleep(interval)
                batch = ref()
                if batch is not None:
                    batch.flush()

        threading.Thread(target=loop, name="metrics-flush", daemon=True).start()


_batches: weakref.WeakSet[Batch] = weakref.WeakSet()
_create_lock = threading.Lock()


@atexit.register
def _flush_all() -> None:
    for batch in list(_batches):
        batch.flush()


def _batch() -> Batch | None:
    """The app's batch, made on first use (None when batching is off or outside an app)."""
    if not has_app_context():
        return None
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    if "sv_metrics" in app.extensions:
        return app.extensions["sv_metrics"]
    with _create_lock:
        if "sv_metrics" not in app.extensions:
            interval = float(app.config.get("METRICS_FLUSH_INTERVAL", 0 if app.testing else DEFAULT_FLUSH_INTERVAL))
            batch = None
            if interval > 0:
                batch = Batch(redis_store.client, interval, int(app.config.get("METRICS_FLUSH_MAX", DEFAULT_FLUSH_MAX)))
                _batches.add(batch)
            app.extensions["sv_metrics"] = batch
    return app.extensions["sv_metrics"]


def inc(name: str, amount: int = 1, **labels: str) -> None:
    """Count now; the request's counters join the process batch when it ends (or go out at once, unbatched)."""
    if name not in COUNTERS:
        raise KeyError(name)
    field = _field(name, labels)
    if has_request_context():
        pending = g.setdefault("sv_metrics", {})
        pending[field] = pending.get(field, 0) + amount
    else:
        _send({field: amount})


def flush(response: Response) -> Response:
    pending = g.pop("sv_metrics", None)
    if pending:
        _send(pending)
    return response


def _send(pending: dict[str, int]) -> None:
    batch = _batch()
    if batch is None:
        _write(pending)
    else:
        batch.add(pending)


def _write(pending: dict[str, int], client: redis.Redis | None = None) -> None:
    try:
        pipe = (client or redis_store.client).pipeline(transaction=False)
        for field, amount in pending.items():
            pipe.hincrby(METRICS_KEY, field, amount)
        pipe.execute()
    except redis.RedisError:
        log.warning("metrics: redis unavailable, %d counters dropped", len(pending))


def render() -> str:
    batch = _batch()
    if batch is not None:
        batch.flush()  # this process's own counts are exact; other workers' lag by at most their interval
    values = redis_store.client.hgetall(METRICS_KEY)
    lines: list[str] = []
    for name, help_text in COUNTERS.items():
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} counter"]
        samples = sorted((f, v) for f, v in values.items() if f == name or f.startswith(name + "{"))
        lines += [f"{f} {v}" for f, v in samples] or [f"{name} 0"]
    return "\n".join(lines) + "\n"
