"""Active health checks as lua-resty-healthcheck 3.1 (kong-3.9.1-0.rockspec:34) runs them for Kong's upstreams
(kong/runloop/balancer/healthcheckers.lua).

* Two timers per upstream: targets currently (mostly) healthy are probed every `active.healthy.interval` seconds,
  (mostly) unhealthy ones every `active.unhealthy.interval`; 0 turns that side off, the first probe comes one
  interval after start (checker:start). `type: tcp` is turned off in Kong's http subsystem
  (healthcheckers.lua:243-250). At most `concurrency` probes run at once.
* A probe (checker:run_single_check): connect with `timeout` seconds for connect, send and receive; `https` does a
  TLS handshake with SNI = the target's name, verified when `https_verify_certificate` against Kong's cosocket store
  (`lua_ssl_trusted_certificate`, `lua_ssl_verify_depth`); a failed handshake is a TCP failure. Then
  `GET <http_path> HTTP/1.0` with `active.headers` and `Host: <upstream.host_header or the target's name>`
  (healthcheckers.lua:52-53), and only the status line is read: a status in `healthy.http_statuses` is a success,
  in `unhealthy.http_statuses` or no valid status line an HTTP failure, any other ignored. A timeout is a timeout,
  anything else a TCP failure. The counters are the ones passive checks feed (balancer.UpstreamBalancer).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import ssl

from kong_emulator.runloop.balancer import UpstreamBalancer
from kong_emulator.runloop.dns import KongResolver

log = logging.getLogger("kong_emulator.kong")
STATUS_LINE = re.compile(rb"^HTTP/\d+\.\d+\s+(\d+)", re.IGNORECASE)


class ActiveChecker:
    """One upstream's active probes."""

    def __init__(self, balancer: UpstreamBalancer, resolver: KongResolver, tls: ssl.SSLContext | None) -> None:
        self.balancer = balancer
        self.resolver = resolver
        self.active = balancer.checks["active"]
        self.tls = tls
        self.limit = asyncio.Semaphore(max(int(self.active.get("concurrency") or 10), 1))

    def intervals(self) -> dict[str, float]:
        if self.active.get("type", "http") not in ("http", "https"):
            return {}  # healthcheckers.lua:243-250: no tcp/grpc active checks in the http subsystem
        out = {}
        for side in ("healthy", "unhealthy"):
            interval = float((self.active.get(side) or {}).get("interval") or 0)
            if interval > 0:
                out[side] = interval
        return out

    async def run(self, side: str, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            targets = [t for t in self.balancer.targets if self.balancer.is_healthy(t) == (side == "healthy")]
            await asyncio.gather(*(self._limited(t) for t in targets))

    async def _limited(self, target) -> None:
        async with self.limit:
            outcome = await self.probe(target)
        self.balancer.report(target, outcome, check="active")

    async def probe(self, target) -> str | int | None:
        """ "timeout", "tcp" or the HTTP status (None: no valid status line)."""
        timeout = float(self.active.get("timeout", 1))
        ip = await self.resolver.address(target.host)
        if ip is None:
            return "tcp"
        tls = {"ssl": self.tls, "server_hostname": target.host} if self.active.get("type") == "https" else {}
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(ip, target.port, **tls), timeout)
        except TimeoutError:
            return "timeout"
        except (OSError, ssl.SSLError) as exc:
            if isinstance(exc, ssl.SSLError):
                log.error("[healthcheck] failed SSL handshake with '%s (%s:%d)': %s", target.host, ip, target.port, exc)
            return "tcp"
        try:
            writer.write(self._request(target))
            line = await asyncio.wait_for(reader.readline(), timeout)
        except TimeoutError:
            return "timeout"
        except OSError:
            return "tcp"
        finally:
            writer.close()
            with contextlib.suppress(OSError, ssl.SSLError):
                await writer.wait_closed()
        if not line:
            return "tcp"  # closed before a status line: the receive failed
        m = STATUS_LINE.match(line)
        return int(m.group(1)) if m else None

    def _request(self, target) -> bytes:
        headers = ""
        for name, values in (self.active.get("headers") or {}).items():
            for value in values if isinstance(values, list) else [values]:
                headers += f"{name}: {value}\r\n"
        host = self.balancer.upstream.host_header or target.host
        path = self.active.get("http_path") or "/"
        return f"GET {path} HTTP/1.0\r\n{headers}Host: {host}\r\n\r\n".encode("utf-8", "surrogateescape")


class HealthCheckers:
    """Every upstream's active checker, started with the proxy and cancelled at shutdown."""

    def __init__(self, balancers, resolver: KongResolver, tls_for_probes) -> None:
        self.checkers = [ActiveChecker(b, resolver, tls_for_probes(b)) for b in balancers]
        self.tasks: list[asyncio.Task] = []

    def start(self) -> None:
        for checker in self.checkers:
            for side, interval in checker.intervals().items():
                self.tasks.append(asyncio.create_task(checker.run(side, interval)))

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
