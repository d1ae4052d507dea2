"""Kong's bundled ``prometheus`` plugin, run natively in Python (Kong 3.9).

Kong sources (Kong/kong): `kong/plugins/prometheus/handler.lua` (PRIORITY 13, a ``log`` handler only),
`schema.lua` (six booleans, all ``false`` by default), `exporter.lua` (metric names, labels, buckets, what a scrape
refreshes) and `prometheus.lua` (knyar/nginx-lua-prometheus: the text format, key sorting, ``le`` padding).

* ``log``: from ``kong.log.serialize()`` (the log snapshot), nothing is recorded for a request without a service
  (``-- do not record any stats if the service is not present``). The service label is the service's name or
  host, the route label the route's name or id, ``workspace`` the workspace name (``default``), ``consumer`` the
  consumer's username when ``per_consumer`` is on, else ``""``. With ``status_code_metrics``:
  ``http_requests_total{service,route,code,source,workspace,consumer}`` (source ``service`` when
  ``kong.response.get_source()`` is ``service``, else ``kong``); with ``latency_metrics``: the histograms
  ``kong_latency_ms`` (latencies.kong), ``upstream_latency_ms`` (latencies.proxy, only when >= 0: not for exits)
  and ``request_latency_ms`` (latencies.request), labels ``{service,route,workspace}``; with
  ``bandwidth_metrics``: ``bandwidth_bytes{service,route,direction,workspace,consumer}`` (ingress = request.size,
  egress = response.size, only when > 0).
* Metrics are node-wide (Kong: one ``prometheus_metrics`` shm shared by all workers), prefixed ``kong_`` on output,
  and served by the Status API (`kong_emulator.listeners.status`) at ``/metrics``: every scrape refreshes the gauges
  ``nginx_connections_total{node_id,subsystem,state}``, ``nginx_requests_total{node_id,subsystem}``,
  ``nginx_timers{state}``, ``datastore_reachable`` (1: db-less), ``node_info{node_id,version}``, the memory gauges,
  and ``upstream_target_health{upstream,target,address,state,subsystem}`` once any prometheus plugin has
  ``upstream_health_metrics`` on. ``nginx_metric_errors_total`` is always there (0).

Differences: counters are visible at once (Kong's per-worker counters sync into the shm every second);
``ai_metrics`` is accepted and records nothing (no AI plugins here).
"""

from __future__ import annotations

import logging
import math
import os
import threading
from typing import Any

from kong_emulator import KONG_VERSION
from kong_emulator.config.entities import Plugin, PluginInfo

log = logging.getLogger("kong_emulator")

NAME = "prometheus"
PRIORITY = 13
PREFIX = "kong_"
# exporter.lua
KONG_LATENCY_BUCKETS = (1, 2, 5, 7, 10, 15, 20, 30, 50, 75, 100, 200, 500, 750, 1000)
UPSTREAM_LATENCY_BUCKETS = (25, 50, 80, 100, 250, 400, 700, 1000, 2000, 5000, 10000, 30000, 60000)
ERROR_METRIC = "nginx_metric_errors_total"


def schema() -> dict[str, Any]:
    """``kong/plugins/prometheus/schema.lua`` (3.9)."""

    def flag(description: str) -> dict[str, Any]:
        return {"type": "boolean", "default": False, "description": description}

    return {
        "name": NAME,
        "fields": [
            {
                "config": {
                    "type": "record",
                    "fields": [
                        {"per_consumer": flag("Fill in the consumer label of requests and bandwidth metrics.")},
                        {"status_code_metrics": flag("Export http_requests_total.")},
                        {"ai_metrics": flag("Export the AI metrics (nothing to record in the emulator).")},
                        {"latency_metrics": flag("Export kong_latency_ms, upstream_latency_ms, request_latency_ms.")},
                        {"bandwidth_metrics": flag("Export bandwidth_bytes.")},
                        {"upstream_health_metrics": flag("Export upstream_target_health.")},
                    ],
                }
            }
        ],
    }


def info() -> PluginInfo:
    return PluginInfo(name=NAME, version=KONG_VERSION, priority=PRIORITY, phases=("log",), schema=schema())


# ---- the metric registry (prometheus.lua) ---------------------------------------------------------------------


def bucket_format(buckets) -> str:
    """``construct_bucket_format``: zero padding that makes bucket keys sort numerically."""
    max_order, max_precision = 1, 1
    for bucket in buckets:
        as_string = (f"{bucket:f}").rstrip("0")
        dot = as_string.index(".")
        max_order = max(max_order, dot)
        max_precision = max(max_precision, len(as_string) - dot - 1)
    return f"%0{max_order + max_precision + 1}.{max_precision}f"


def lua_number(value: float) -> str:
    """``tostring(n)`` in LuaJIT: integers without a fraction, else ``%.14g``."""
    if isinstance(value, int):
        return str(value)
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.14g}"


def _label_value(value: Any) -> str:
    if value is None:
        return "nil"
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, int | float):
        return lua_number(value)
    return str(value).replace("\\", "\\\\").replace('"', '\\"')


class Metric:
    def __init__(self, name: str, help_: str, typ: str, labels: tuple[str, ...] = (), buckets=None) -> None:
        self.name, self.help, self.typ, self.labels = name, help_, typ, labels
        self.buckets = tuple(buckets or ())
        self.fmt = bucket_format(self.buckets) if buckets else ""

    def key(self, values: tuple, suffix: str = "", extra: str = "") -> str:
        parts = [f'{k}="{_label_value(v)}"' for k, v in zip(self.labels, values, strict=True)]
        if extra:
            parts.append(extra)
        return f"{self.name}{suffix}{{{','.join(parts)}}}" if parts else f"{self.name}{suffix}"


class Registry:
    """The ``prometheus_metrics`` shm: full metric keys → values, one per node (process)."""

    def __init__(self) -> None:
        self.metrics: dict[str, Metric] = {}
        self.values: dict[str, float] = {}
        self.lock = threading.Lock()
        self.counter(ERROR_METRIC, "Number of nginx-lua-prometheus errors")
        self.values[ERROR_METRIC] = 0

    def _register(self, metric: Metric) -> Metric:
        self.metrics[metric.name] = metric
        return metric

    def counter(self, name, help_, labels=()) -> Metric:
        return self._register(Metric(name, help_, "counter", tuple(labels)))

    def gauge(self, name, help_, labels=()) -> Metric:
        return self._register(Metric(name, help_, "gauge", tuple(labels)))

    def histogram(self, name, help_, labels, buckets) -> Metric:
        return self._register(Metric(name, help_, "histogram", tuple(labels), buckets))

    def inc(self, metric: Metric, value: float, labels: tuple = ()) -> None:
        if value < 0:
            self.values[ERROR_METRIC] = self.values.get(ERROR_METRIC, 0) + 1
            return
        key = metric.key(labels)
        with self.lock:
            self.values[key] = self.values.get(key, 0) + value

    def set(self, metric: Metric, value: float, labels: tuple = ()) -> None:
        with self.lock:
            self.values[metric.key(labels)] = value

    def reset(self, metric: Metric) -> None:
        with self.lock:
            for key in [k for k in self.values if k.startswith(metric.name + "{") or k == metric.name]:
                del self.values[key]

    def observe(self, metric: Metric, value: float, labels: tuple) -> None:
        with self.lock:
            for suffix, add in (("_count", 1), ("_sum", value)):
                key = metric.key(labels, suffix)
                self.values[key] = self.values.get(key, 0) + add
            for bucket in metric.buckets:
                if value <= bucket:
                    key = metric.key(labels, "_bucket", f'le="{metric.fmt % bucket}"')
                    self.values[key] = self.values.get(key, 0) + 1
            key = metric.key(labels, "_bucket", 'le="Inf"')
            self.values[key] = self.values.get(key, 0) + 1

    def text(self, prefix: str = PREFIX) -> str:
        """``Prometheus:metric_data``: keys sorted, HELP/TYPE before a metric's first sample, ``le`` un-padded."""
        with self.lock:
            items = sorted(self.values.items())
        out: list[str] = []
        seen: set[str] = set()
        for key, value in items:
            short = _short_name(key)
            if short not in seen:
                metric = self.metrics.get(short)
                if metric is not None:
                    out.append(f"# HELP {prefix}{short} {metric.help}\n")
                    out.append(f"# TYPE {prefix}{short} {metric.typ}\n")
                seen.add(short)
            out.append(f"{prefix}{_fix_le(key)} {lua_number(value)}\n")
        return "".join(out)


def _short_name(key: str) -> str:
    brace = key.find("{")
    if brace < 0:
        return key
    idx = key.find("_bucket{")
    if idx >= 0 and "le=" in key:
        return key[:idx]
    return key[:brace]


def _fix_le(key: str) -> str:
    marker = key.rfind('le="')
    if marker <= 0 or key[marker - 1] not in ",{":
        return key
    end = key.index('"', marker + 4)
    raw = key[marker + 4 : end]
    fixed = "+Inf" if raw == "Inf" else lua_number(float(raw))
    return f"{key[: marker + 4]}{fixed}{key[end:]}"


class Exporter:
    """``exporter.lua``: the metrics and how a request and a scrape update them."""

    def __init__(self) -> None:
        self.reg = r = Registry()
        self.connections = r.gauge(
            "nginx_connections_total", "Number of connections by subsystem", ("node_id", "subsystem", "state")
        )
        self.nginx_requests = r.gauge("nginx_requests_total", "Number of requests total", ("node_id", "subsystem"))
        self.timers = r.gauge("nginx_timers", "Number of nginx timers", ("state",))
        self.db_reachable = r.gauge("datastore_reachable", "Datastore reachable from Kong, 0 is unreachable")
        self.node_info = r.gauge("node_info", "Kong Node metadata information", ("node_id", "version"))
        self.upstream_target_health = r.gauge(
            "upstream_target_health",
            "Health status of targets of upstream. States = healthchecks_off|healthy|unhealthy|dns_error, "
            "value is 1 when state is populated.",
            ("upstream", "target", "address", "state", "subsystem"),
        )
        self.worker_vms = r.gauge(
            "memory_workers_lua_vms_bytes", "Allocated bytes in worker Lua VM", ("node_id", "pid", "kong_subsystem")
        )
        self.shms = r.gauge(
            "memory_lua_shared_dict_bytes",
            "Allocated slabs in bytes in a shared_dict",
            ("node_id", "shared_dict", "kong_subsystem"),
        )
        self.shm_capacity = r.gauge(
            "memory_lua_shared_dict_total_bytes",
            "Total capacity in bytes of a shared_dict",
            ("node_id", "shared_dict", "kong_subsystem"),
        )
        self.status = r.counter(
            "http_requests_total",
            "HTTP status codes per consumer/service/route in Kong",
            ("service", "route", "code", "source", "workspace", "consumer"),
        )
        self.kong_latency = r.histogram(
            "kong_latency_ms",
            "Latency added by Kong and enabled plugins for each service/route in Kong",
            ("service", "route", "workspace"),
            KONG_LATENCY_BUCKETS,
        )
        self.upstream_latency = r.histogram(
            "upstream_latency_ms",
            "Latency added by upstream response for each service/route in Kong",
            ("service", "route", "workspace"),
            UPSTREAM_LATENCY_BUCKETS,
        )
        self.total_latency = r.histogram(
            "request_latency_ms",
            "Total latency incurred during requests for each service/route in Kong",
            ("service", "route", "workspace"),
            UPSTREAM_LATENCY_BUCKETS,
        )
        self.bandwidth = r.counter(
            "bandwidth_bytes",
            "Total bandwidth (ingress/egress) throughput in bytes",
            ("service", "route", "direction", "workspace", "consumer"),
        )
        self.export_upstream_health = False
        self._initialized_for: str | None = None

    # -- log phase ----------------------------------------------------------------------------------------------

    def log(self, message: dict[str, Any], conf: dict[str, Any], source: str) -> None:
        """``PrometheusHandler:log`` + ``exporter.log`` for one serialized request."""
        service = message.get("service")
        if not service:
            return  # "do not record any stats if the service is not present"
        service_name = service.get("name") or service.get("host")
        route = message.get("route")
        route_name = (route.get("name") or route.get("id")) if route else None
        workspace = message.get("workspace_name") or ""
        consumer: Any = ""
        if conf.get("per_consumer") and message.get("consumer") is not None:
            consumer = message["consumer"].get("username")
            if consumer is None:
                consumer = ""
        reg = self.reg
        response, request = message.get("response") or {}, message.get("request") or {}
        if conf.get("bandwidth_metrics"):
            ingress, egress = _number(request.get("size")), _number(response.get("size"))
            if ingress and ingress > 0:
                reg.inc(self.bandwidth, ingress, (service_name, route_name, "ingress", workspace, consumer))
            if egress and egress > 0:
                reg.inc(self.bandwidth, egress, (service_name, route_name, "egress", workspace, consumer))
        if conf.get("status_code_metrics") and response.get("status") is not None:
            kind = "service" if source == "service" else "kong"
            reg.inc(self.status, 1, (service_name, route_name, response["status"], kind, workspace, consumer))
        if conf.get("latency_metrics"):
            latencies = message.get("latencies") or {}
            labels = (service_name, route_name, workspace)
            request_latency = latencies.get("request")
            if request_latency is not None and request_latency >= 0:
                reg.observe(self.total_latency, request_latency, labels)
            upstream_latency = latencies.get("proxy")
            if upstream_latency is not None and upstream_latency >= 0:
                reg.observe(self.upstream_latency, upstream_latency, labels)
            kong_latency = latencies.get("kong")
            if kong_latency is not None and kong_latency >= 0:
                reg.observe(self.kong_latency, kong_latency, labels)

    # -- scrape -------------------------------------------------------------------------------------------------

    def metric_data(self, *, node_id: str, stats: dict[str, int], memory: dict[str, Any], health=None) -> str:
        """``exporter.metric_data``: refresh the gauges, then the whole text."""
        reg, sub = self.reg, "http"
        if self._initialized_for != node_id:
            reg.reset(self.node_info)
            reg.set(self.node_info, 1, (node_id, KONG_VERSION))
            self._initialized_for = node_id
        for state, key in (
            ("accepted", "connections_accepted"),
            ("handled", "connections_handled"),
            ("total", "total_requests"),
            ("active", "connections_active"),
            ("reading", "connections_reading"),
            ("writing", "connections_writing"),
            ("waiting", "connections_waiting"),
        ):
            reg.set(self.connections, stats.get(key, 0), (node_id, sub, state))
        reg.set(self.nginx_requests, stats.get("total_requests", 0), (node_id, sub))
        reg.set(self.timers, 0, ("running",))
        reg.set(self.timers, 0, ("pending",))
        reg.set(self.db_reachable, 1)  # database = off: kong.db.connector:connect() always succeeds
        if self.export_upstream_health:
            reg.reset(self.upstream_target_health)
            for upstream, target, address, status in health or ():
                for state in ("healthchecks_off", "healthy", "unhealthy", "dns_error"):
                    value = 1 if state == status else 0
                    reg.set(self.upstream_target_health, value, (upstream, target, address, state, sub))
        for name, shm in (memory.get("lua_shared_dicts") or {}).items():
            reg.set(self.shm_capacity, shm["capacity"], (node_id, name, sub))
            reg.set(self.shms, shm["allocated_slabs"], (node_id, name, sub))
        for vm in memory.get("workers_lua_vms") or ():
            reg.set(self.worker_vms, vm["http_allocated_gc"], (node_id, vm["pid"], sub))
        return reg.text()


def _number(value: Any) -> float | None:
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


EXPORTER = Exporter()  # the node's metrics, read by the Status API (kong_emulator.listeners.status)


class Prometheus:
    """The native handler the `NativeRunner` calls."""

    runs_as = "natively in Python (kong_emulator.native.prometheus); metrics on the Status API at /metrics"

    def __init__(self, exporter: Exporter | None = None) -> None:
        self.name = NAME
        self.info = info()
        self.exporter = exporter or EXPORTER

    def configure(self, plugins) -> None:
        """``PrometheusHandler:configure``: upstream health is exported once any config asks for it."""
        if any(p.name == NAME and p.enabled and p.config.get("upstream_health_metrics") for p in plugins):
            self.exporter.export_upstream_health = True

    def startup_notes(self, plugin: Plugin) -> list[str]:
        notes = []
        conf = plugin.config
        if not any(conf.get(k) for k in ("status_code_metrics", "latency_metrics", "bandwidth_metrics")):
            notes.append(
                "status_code_metrics, latency_metrics and bandwidth_metrics are all off (Kong's defaults): "
                "no per-route request metrics are recorded"
            )
        if conf.get("ai_metrics"):
            notes.append("ai_metrics has nothing to record here (no AI plugins run in the emulator)")
        return notes

    def run_phase(self, plugin: Plugin, phase: str, ctx, worker: int) -> None:
        if phase != "log" or ctx.snapshot is None:
            return
        self.exporter.log(ctx.snapshot.serialized, plugin.config, ctx.snapshot.response_source)


def memory_stats(extra_allocated: dict[str, int] | None = None) -> dict[str, Any]:
    """``kong.node.get_memory_stats()`` in bytes: Kong 3.9's shared dicts (nginx_kong.lua, mem_cache_size 128m)."""
    mib = 1024 * 1024
    capacities = {
        "kong": 5 * mib,
        "kong_locks": 8 * mib,
        "kong_healthchecks": 5 * mib,
        "kong_cluster_events": 5 * mib,
        "kong_rate_limiting_counters": 12 * mib,
        "kong_core_db_cache": 128 * mib,
        "kong_core_db_cache_miss": 12 * mib,
        "kong_db_cache": 128 * mib,
        "kong_db_cache_miss": 12 * mib,
        "kong_secrets": 5 * mib,
        "prometheus_metrics": 5 * mib,
    }
    allocated = dict(extra_allocated or {})
    allocated.setdefault("prometheus_metrics", sum(len(k) + 8 for k in EXPORTER.reg.values))
    dicts = {
        name: {"capacity": cap, "allocated_slabs": min(cap, 4096 * 10 + allocated.get(name, 0))}
        for name, cap in capacities.items()
    }
    return {"lua_shared_dicts": dicts, "workers_lua_vms": [{"http_allocated_gc": _rss(), "pid": os.getpid()}]}


def _rss() -> int:
    try:
        with open("/proc/self/statm", encoding="ascii") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0
