"""Prometheus metrics kept in the plugin-server process, with a text-exposition renderer (no dependency).

Counters: sv_quota_throttled_total{policy,source}, sv_quota_shadow_rejects_total{policy,source},
sv_quota_redis_errors_total{op}, sv_quota_breaker_open_total{op}, sv_quota_degraded_total{op},
sv_quota_fail_open_total{op}, sv_quota_settled_total{result},
sv_quota_abuse_strikes_total{status}, sv_quota_abuse_blocks_total{subject,reason} (every block started).
Histogram: sv_quota_utilisation_ratio{quota} (_bucket{le}, _sum, _count): how full a quota is when it is checked
(committed + held units / the day's limit).
Gauge: sv_quota_redis_breaker_open: 1 while the Redis circuit breaker of an sv-quota instance in this process is open
(decisions then skip Redis: fault-tolerant rate limits are decided in process, fail-closed limits answer 503).
"""

from __future__ import annotations

import threading
import weakref
from collections import Counter

UTILISATION_BUCKETS = (0.5, 0.8, 1.0)
_HELP = {
    "throttled": "Requests rejected with 429, by policy and source (redis, cache, local: decided in process).",
    "shadow_rejects": "Requests a shadow-mode limit would have rejected.",
    "redis_errors": "Redis calls that failed or were skipped by the circuit breaker.",
    "breaker_open": "Times the Redis circuit breaker opened (each opening is also logged).",
    "degraded": "Requests whose fault-tolerant rate limits were decided in process because Redis failed.",
    "fail_open": "Requests let through uncharged because Redis failed and the quota was fault tolerant.",
    "settled": "Reservations settled in the log phase: commit, release or error.",
    "abuse_strikes": "Abusive answers (401/403/429) counted towards a block, by status.",
    "abuse_blocks": "Temporary abuse blocks started, by subject kind (ip, account) and reason.",
}
_LABELS = {
    "throttled": ("policy", "source"),
    "shadow_rejects": ("policy", "source"),
    "redis_errors": ("op",),
    "breaker_open": ("op",),
    "degraded": ("op",),
    "fail_open": ("op",),
    "settled": ("result",),
    "abuse_strikes": ("status",),
    "abuse_blocks": ("subject", "reason"),
}


class Metrics:
    def __init__(self) -> None:
        self._counts: Counter[tuple[str, tuple[str, ...]]] = Counter()
        self._ratio_sums: dict[str, float] = {}
        self._breakers: weakref.WeakSet = weakref.WeakSet()  # objects with breaker_open() -> bool
        self._lock = threading.Lock()

    def inc(self, name: str, *labels: str) -> None:
        with self._lock:
            self._counts[(name, labels)] += 1

    def observe_quota(self, quota: str, ratio: float) -> None:
        with self._lock:
            for le in UTILISATION_BUCKETS:
                if ratio <= le:
                    self._counts[("utilisation", (quota, str(le)))] += 1
            self._counts[("utilisation", (quota, "+Inf"))] += 1
            self._ratio_sums[quota] = self._ratio_sums.get(quota, 0.0) + ratio

    def watch_breaker(self, storage) -> None:
        """Report this storage's circuit breaker in sv_quota_redis_breaker_open (held weakly)."""
        with self._lock:
            self._breakers.add(storage)

    def breaker_open(self) -> bool:
        with self._lock:
            storages = list(self._breakers)
        return any(s.breaker_open() for s in storages)

    def value(self, name: str, *labels: str) -> int:
        return self._counts[(name, labels)]

    def render(self) -> str:
        """Prometheus text exposition format 0.0.4."""
        breaker = self.breaker_open()
        with self._lock:
            items = sorted(self._counts.items())
            sums = dict(self._ratio_sums)
        lines: list[str] = []
        for name, help_text in _HELP.items():
            lines += [f"# HELP sv_quota_{name}_total {help_text}", f"# TYPE sv_quota_{name}_total counter"]
            for (n, labels), v in items:
                if n == name:
                    pairs = ",".join(f'{k}="{_esc(x)}"' for k, x in zip(_LABELS[name], labels, strict=True))
                    lines.append(f"sv_quota_{name}_total{{{pairs}}} {v}")
        lines += _histogram(items, sums)
        lines += [
            "# HELP sv_quota_redis_breaker_open 1 while the Redis circuit breaker of an sv-quota instance is open.",
            "# TYPE sv_quota_redis_breaker_open gauge",
            f"sv_quota_redis_breaker_open {1 if breaker else 0}",
        ]
        return "\n".join(lines) + "\n"


def _histogram(items: list, sums: dict[str, float]) -> list[str]:
    """sv_quota_utilisation_ratio: cumulative buckets, then _sum and _count (= the +Inf bucket) per quota."""
    lines = [
        "# HELP sv_quota_utilisation_ratio How full a daily quota is when a request is checked (used + held / limit).",
        "# TYPE sv_quota_utilisation_ratio histogram",
    ]
    buckets: dict[str, dict[str, int]] = {}
    for (n, labels), v in items:
        if n == "utilisation":  # (unpack only these: other counters have one or two labels)
            quota, le = labels
            buckets.setdefault(quota, {})[le] = v
    for quota, found in sorted(buckets.items()):
        q = _esc(quota)
        for le in (*map(str, UTILISATION_BUCKETS), "+Inf"):  # increasing, +Inf last
            lines.append(f'sv_quota_utilisation_ratio_bucket{{quota="{q}",le="{le}"}} {found.get(le, 0)}')
        lines.append(f'sv_quota_utilisation_ratio_sum{{quota="{q}"}} {sums.get(quota, 0.0)!r}')
        lines.append(f'sv_quota_utilisation_ratio_count{{quota="{q}"}} {found.get("+Inf", 0)}')
    return lines


def _esc(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


METRICS = Metrics()  # the plugin-server process's registry


def serve_from_env(env_var: str = "SV_QUOTA_METRICS_PORT", host_var: str = "SV_QUOTA_METRICS_HOST"):
    """Serve METRICS on $SV_QUOTA_METRICS_HOST (default 127.0.0.1):$SV_QUOTA_METRICS_PORT/metrics in a daemon
    thread; no-op when the port is unset or 0. The Helm chart sets the host to 0.0.0.0 so Prometheus can scrape the pod.
    Returns the server (tests stop it), or None."""
    import os
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    port = (os.environ.get(env_var) or "").strip()
    if not port or int(port) == 0:  # the chart's 0 disables it
        return None
    host = os.environ.get(host_var) or "127.0.0.1"

    class _Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = METRICS.render().encode()
            self.send_response(200 if self.path == "/metrics" else 404)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer((host, int(port)), _Handler)
    threading.Thread(target=server.serve_forever, name="sv-quota-metrics", daemon=True).start()
    return server
