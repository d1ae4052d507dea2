"""Prometheus counters kept in one Redis hash, so every gunicorn worker reports the same totals."""

from __future__ import annotations

import logging

import redis
from flask import Response, g, has_request_context

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


def _field(name: str, labels: dict[str, str]) -> str:
    if not labels:
        return name
    inner = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return f"{name}{{{inner}}}"


def inc(name: str, amount: int = 1, **labels: str) -> None:
    """Count now, write at the end of the request (one Redis round trip for all of a request's counters)."""
    if name not in COUNTERS:
        raise KeyError(name)
    field = _field(name, labels)
    if has_request_context():
        pending = g.setdefault("sv_metrics", {})
        pending[field] = pending.get(field, 0) + amount
    else:
        _write({field: amount})


def flush(response: Response) -> Response:
    pending = g.pop("sv_metrics", None)
    if pending:
        _write(pending)
    return response


def _write(pending: dict[str, int]) -> None:
    try:
        pipe = redis_store.client.pipeline(transaction=False)
        for field, amount in pending.items():
            pipe.hincrby(METRICS_KEY, field, amount)
        pipe.execute()
    except redis.RedisError:
        log.warning("metrics: redis unavailable, %d counters dropped", len(pending))


def render() -> str:
    values = redis_store.client.hgetall(METRICS_KEY)
    lines: list[str] = []
    for name, help_text in COUNTERS.items():
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} counter"]
        samples = sorted((f, v) for f, v in values.items() if f == name or f.startswith(name + "{"))
        lines += [f"{f} {v}" for f, v in samples] or [f"{name} 0"]
    return "\n".join(lines) + "\n"
