"""Kong's Status API on ``status_listen`` (Kong 3.9): ``/status``, ``/status/ready`` and the prometheus ``/metrics``.

Kong sources (Kong/kong): `kong/status/init.lua` (the app: core health routes, then each loaded plugin's
``status_api.lua``), `kong/api/routes/health.lua` (``GET /status``), `kong/status/ready.lua` (``GET /status/ready``),
`kong/plugins/prometheus/status_api.lua` (``GET /metrics`` → ``exporter.collect()``), `kong/templates/kong_defaults.lua`
(``status_listen = off``: the Status API only exists when kong.conf or ``KONG_STATUS_LISTEN`` opens it).

* ``/metrics`` is there when the ``prometheus`` plugin is loaded (in ``plugins``, ``bundled`` included), whether or
  not kong.yml configures it (per-request metrics need a configured plugin); ``Content-Type: text/plain;
  charset=UTF-8``.
* ``/status``: ``{"database":{"reachable":true},"memory":{...},"server":{...},"configuration_hash":"..."}``;
  ``server`` is ``kong.nginx.get_statistics()`` counted by the emulator over its proxy listeners (connections
  accepted/handled/active, requests in flight = writing, idle keep-alive = waiting, reading 0), ``memory`` the
  shared dicts of Kong's template (capacities as configured by default) and this process as the one worker VM;
  ``?unit=b|k|m|g`` and ``?scale=N`` as in Kong (default ``m``, 2 decimals). ``configuration_hash`` is the MD5 of the
  declarative config file (Kong hashes its parsed form: the value differs, its role — changes when the config
  does — is the same).
* ``/status/ready``: ``200 {"message":"ready"}`` once the emulator serves (it loads kong.yml before listening).
* Anything else: ``404 {"message":"Not found"}``; other methods on these paths: ``405 {"message":"Method not
  allowed"}``.
"""

from __future__ import annotations

import hashlib
import json
import logging

from aiohttp import web

from kong_emulator import KONG_VERSION
from kong_emulator.config.conf import parse_listeners

log = logging.getLogger("kong_emulator")

JSON = "application/json; charset=utf-8"


def status_listeners(raw: dict[str, str]) -> list:
    """``status_listen`` from kong.conf's raw keys (``off`` by default), plain-HTTP entries only."""
    return [entry for entry in parse_listeners(raw.get("status_listen", "off"), "status_listen") if not entry.ssl]


class ServerStats:
    """``kong.nginx.get_statistics()`` for the emulator's proxy listeners."""

    def __init__(self) -> None:
        self.accepted = 0
        self.closed = 0
        self.total_requests = 0
        self.writing = 0

    def watch(self, server) -> None:
        """Count the connections of an aiohttp ``web.Server`` (``AppRunner.server``)."""
        made, lost = server.connection_made, server.connection_lost

        def connection_made(handler, transport):
            self.accepted += 1
            return made(handler, transport)

        def connection_lost(handler, exc=None):
            self.closed += 1
            return lost(handler, exc)

        server.connection_made = connection_made
        server.connection_lost = connection_lost

    def counted(self, handler):
        """``handler`` counting the requests it serves (total, in flight); a plain wrapper rather than an aiohttp
        middleware, which would put aiohttp's middleware chain on every request."""

        async def counting(request: web.Request):
            self.total_requests += 1
            self.writing += 1
            try:
                return await handler(request)
            finally:
                self.writing -= 1

        return counting

    def snapshot(self) -> dict[str, int]:
        active = max(self.accepted - self.closed, 0)
        writing = min(self.writing, active) if active else self.writing
        return {
            "connections_accepted": self.accepted,
            "connections_active": active,
            "connections_handled": self.accepted,
            "connections_reading": 0,
            "connections_waiting": max(active - writing, 0),
            "connections_writing": writing,
            "total_requests": self.total_requests,
        }


def bytes_to_str(value: int, unit: str | None, scale: int | None) -> str | int:
    """``kong.tools.utils.bytes_to_str``; ValueError with Kong's message for a bad unit or scale."""
    if not unit or unit.lower() == "b":
        return int(value)
    scale = 2 if scale is None else scale
    if not isinstance(scale, int) or scale < 0:
        raise ValueError("scale must be equal or greater than 0")
    factor = {"k": (2**10, "KiB"), "m": (2**20, "MiB"), "g": (2**30, "GiB")}.get(unit.lower())
    if factor is None:
        raise ValueError(f"invalid unit '{unit}' (expected 'k/K', 'm/M', or 'g/G')")
    return f"{value / factor[0]:.{scale}f} {factor[1]}"


class StatusAPI:
    """One aiohttp app for every ``status_listen`` address."""

    def __init__(self, engine, stats: ServerStats, *, prometheus_loaded: bool) -> None:
        self.engine = engine
        self.stats = stats
        self.prometheus_loaded = prometheus_loaded
        self.runners: list[web.AppRunner] = []
        self._hash: str | None = None

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app

    async def start(self, listeners) -> None:
        for host, port, flags in listeners:
            runner = web.AppRunner(self.app(), access_log=None, handle_signals=False)
            await runner.setup()
            await web.TCPSite(runner, host, port, reuse_address=True, reuse_port="reuseport" in flags).start()
            self.runners.append(runner)
            log.info("[emulator] Kong %s Status API listening on http://%s:%d", KONG_VERSION, host, port)

    async def stop(self) -> None:
        for runner in self.runners:
            await runner.cleanup()

    # -- routes -------------------------------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.Response:
        path = request.path.rstrip("/") or "/"
        routes = {"/status": self.status, "/status/ready": self.ready}
        if self.prometheus_loaded:
            routes["/metrics"] = self.metrics
        handler = routes.get(path)
        if handler is None:
            return _json(404, {"message": "Not found"})
        if request.method not in ("GET", "HEAD"):
            return _json(405, {"message": "Method not allowed"})
        return await handler(request)

    async def ready(self, request: web.Request) -> web.Response:
        return _json(200, {"message": "ready"})

    async def status(self, request: web.Request) -> web.Response:
        unit = request.query.get("unit", "m")
        scale_raw = request.query.get("scale")
        try:
            scale = int(scale_raw) if scale_raw is not None else None
        except ValueError:
            return _json(400, {"message": "scale must be equal or greater than 0"})
        try:
            bytes_to_str(0, unit, scale)
        except ValueError as exc:
            return _json(400, {"message": str(exc)})
        memory = self._memory()
        body = {
            "memory": {
                "lua_shared_dicts": {
                    name: {
                        "allocated_slabs": bytes_to_str(d["allocated_slabs"], unit, scale),
                        "capacity": bytes_to_str(d["capacity"], unit, scale),
                    }
                    for name, d in memory["lua_shared_dicts"].items()
                },
                "workers_lua_vms": [
                    {"http_allocated_gc": bytes_to_str(vm["http_allocated_gc"], unit, scale), "pid": vm["pid"]}
                    for vm in memory["workers_lua_vms"]
                ],
            },
            "server": self.stats.snapshot(),
            "database": {"reachable": True},
            "configuration_hash": self._config_hash(),
        }
        return _json(200, body)

    async def metrics(self, request: web.Request) -> web.Response:
        from kong_emulator.native.prometheus import EXPORTER

        env = getattr(self.engine, "pdk_env", None)
        node_id = getattr(env, "node_id", None) or "00000000-0000-0000-0000-000000000000"
        text = EXPORTER.metric_data(
            node_id=node_id, stats=self.stats.snapshot(), memory=self._memory(), health=self._health()
        )
        return web.Response(status=200, body=text.encode(), headers={"Content-Type": "text/plain; charset=UTF-8"})

    # -- data ---------------------------------------------------------------------------------------------------

    def _memory(self) -> dict:
        from kong_emulator.native.prometheus import memory_stats
        from kong_emulator.native.proxy_cache import STORES

        return memory_stats({name: store.allocated() for name, store in STORES.items()})

    def _health(self) -> list[tuple[str, str, str, str]]:
        """(upstream, target, address, state) for ``upstream_target_health`` from the emulator's balancer."""
        out = []
        declarative = getattr(self.engine, "declarative", None)
        balancer = getattr(self.engine, "balancer", None)
        for upstream in getattr(declarative, "upstreams", {}).values():
            checks = upstream.healthchecks or {}
            active = ((checks.get("active") or {}).get("healthy") or {}).get("interval", 0)
            passive = (checks.get("passive") or {}).get("unhealthy") or {}
            enabled = bool(active) or any(passive.get(k) for k in ("http_failures", "tcp_failures", "timeouts"))
            for target in upstream.targets:
                address = f"{target.host}:{target.port}"
                if not enabled:
                    state = "healthchecks_off"
                else:
                    healthy = _is_healthy(balancer, upstream.name, target)
                    state = "healthy" if healthy else "unhealthy"
                out.append((upstream.name, target.target, address, state))
        return out

    def _config_hash(self) -> str:
        if self._hash is None:
            path = getattr(getattr(self.engine, "conf", None), "declarative_config", None)
            try:
                with open(path, "rb") as fh:
                    self._hash = hashlib.md5(fh.read(), usedforsecurity=False).hexdigest()
            except (OSError, TypeError):
                self._hash = "00000000000000000000000000000000"
        return self._hash


def _is_healthy(balancer, upstream_name: str, target) -> bool:
    for attr in ("is_healthy", "healthy"):
        fn = getattr(balancer, attr, None)
        if callable(fn):
            try:
                return bool(fn(upstream_name, target))
            except TypeError:
                continue
    return True


def _json(status: int, body: dict) -> web.Response:
    data = json.dumps(body, separators=(",", ":")).replace("/", "\\/")
    return web.Response(status=status, body=data.encode(), headers={"Content-Type": JSON})
