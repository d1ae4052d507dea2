"""Prometheus metrics with prometheus_client, per pod: each pod reports its own counts and Prometheus sums the pods.

Under gunicorn, ``PROMETHEUS_MULTIPROC_DIR`` (set by the image and the chart) turns on prometheus_client's
multiprocess mode: every worker writes its samples to files in that directory and ``/metrics`` adds up the pod's
workers (gunicorn.conf.py empties the directory at start and marks dead workers), and ``process_*`` comes for every
process of the pod, labelled ``pid`` and ``role`` (storyverse_process_metrics: multiprocess mode has no process
metrics of its own). Without it (development, tests) each app has its own registry, which also carries the process
and platform collectors.

Counters (the seed's Authentication row): ``sv_auth_logins_total{outcome}``, ``sv_auth_tokens_issued_total{kind}``,
``sv_auth_failed_attempts_total{reason}``, ``sv_auth_refresh_reuse_total``, ``sv_auth_password_resets_total{stage}``.
Per request: ``sv_auth_requests_total{endpoint,method,status}`` and the histogram
``sv_auth_request_duration_seconds{endpoint,method}``; ``endpoint`` is the matched URL rule (``unmatched`` for a 404),
so its values are bounded by the routes, and ``method`` one of ``METHODS`` or ``other`` (a client chooses the method
token: every new one would be a new series, in every worker's files).
"""

from __future__ import annotations

import os
import time
from typing import Any

from flask import Flask, Response, current_app, g, request
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
    multiprocess,
)
from storyverse_process_metrics import PodProcessCollector

disable_created_metrics()  # no `*_created` series: Prometheus derives resets itself

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
COUNTERS: dict[str, str] = {
    "sv_auth_logins_total": "Login attempts by outcome (success, failure, throttled).",
    "sv_auth_tokens_issued_total": "Tokens issued by kind (access, refresh).",
    "sv_auth_failed_attempts_total": "Failed authentication attempts by reason.",
    "sv_auth_refresh_reuse_total": "Reuse of a rotated refresh token detected (session revoked).",
    "sv_auth_password_resets_total": "Password reset events by stage (requested, completed).",
}
LABELS: dict[str, tuple[str, ...]] = {
    "sv_auth_logins_total": ("outcome",),
    "sv_auth_tokens_issued_total": ("kind",),
    "sv_auth_failed_attempts_total": ("reason",),
    "sv_auth_refresh_reuse_total": (),
    "sv_auth_password_resets_total": ("stage",),
}
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Seconds; argon2 makes login and register take tens of milliseconds, so the buckets reach well past that.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_EXT = "sv_metrics"


class Metrics:
    """One app's metric objects (registered on its own registry)."""

    def __init__(self, multiproc_dir: str | None) -> None:
        self.multiproc_dir = multiproc_dir
        self.registry = CollectorRegistry(auto_describe=True)
        if multiproc_dir is None:
            ProcessCollector(registry=self.registry)
            PlatformCollector(registry=self.registry)
        self.counters = {
            name: Counter(name.removesuffix("_total"), text, LABELS[name], registry=self.registry)
            for name, text in COUNTERS.items()
        }
        self.requests = Counter(
            "sv_auth_requests",
            "Requests answered, by endpoint (URL rule), method and status.",
            ("endpoint", "method", "status"),
            registry=self.registry,
        )
        self.latency = Histogram(
            "sv_auth_request_duration_seconds",
            "Time to answer a request, by endpoint (URL rule) and method.",
            ("endpoint", "method"),
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )

        # Label children by label values: prometheus_client's ``labels()`` takes a lock and builds its key on every
        # call; the values here are bounded (routes, methods, statuses, the counters' own label sets).
        self.children: dict[tuple, Any] = {}

    def child(self, metric: Any, *values: str) -> Any:
        key = (id(metric), *values)
        found = self.children.get(key)
        if found is None:
            found = self.children[key] = metric.labels(*values)
        return found

    def render(self) -> bytes:
        if self.multiproc_dir is None:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=self.multiproc_dir)
        registry.register(PodProcessCollector())
        return generate_latest(registry)


def init_app(app: Flask) -> None:
    multiproc_dir = os.environ.get(MULTIPROC_ENV) or None
    if multiproc_dir:
        os.makedirs(multiproc_dir, exist_ok=True)  # e.g. a CLI run in a pod whose gunicorn did not create it
    app.extensions[_EXT] = Metrics(multiproc_dir)
    app.before_request(_start)
    app.after_request(_observe)


def _metrics() -> Metrics:
    return current_app.extensions[_EXT]


def inc(name: str, amount: int = 1, **labels: str) -> None:
    """Count ``amount`` on the counter ``name`` (one of COUNTERS) with these label values."""
    m = _metrics()
    counter = m.counters[name]
    if labels:
        counter = m.child(counter, *(labels[label] for label in LABELS[name]))
    counter.inc(amount)


def clock_started(started: float) -> None:
    """The request began at ``started`` (``time.perf_counter()``): fast_refresh.py, before handing a request over."""
    g.sv_metrics_started = started


def _start() -> None:
    if "sv_metrics_started" not in g:  # fast_refresh.py started the clock (clock_started)
        g.sv_metrics_started = time.perf_counter()


def observe_request(endpoint: str, method: str, status: int, started: float | None) -> None:
    """Count one answered request and its duration (``endpoint``: the URL rule, or ``unmatched``)."""
    m = _metrics()
    method = method if method in METHODS else "other"
    m.child(m.requests, endpoint, method, str(status)).inc()
    if started is not None:
        m.child(m.latency, endpoint, method).observe(time.perf_counter() - started)


def _observe(response: Response) -> Response:
    rule = request.url_rule
    endpoint = rule.rule if rule is not None else "unmatched"
    observe_request(endpoint, request.method, response.status_code, g.pop("sv_metrics_started", None))
    return response


def render() -> bytes:
    return _metrics().render()
