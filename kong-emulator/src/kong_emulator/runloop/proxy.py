"""The proxy path of one request, in Kong's order: rewrite → route → access → balancer/upstream → response →
header_filter → body_filter → log.

This module knows HTTP (aiohttp); the plugin exchange is `bridge.PluginRunner`, routing is `router.Router`.

header_filter/body_filter run for every response the client gets, as in Kong: proxied ones, exits (a plugin's
`kong.response.exit`, the runloop's 404/503 `kong.response.error`) and nginx errors rendered by
`kong/error_handlers.lua` (502/504/413/500). The plugins are the ones collected for the request (route, service,
consumer scope); with no route -- no match, or an error before routing -- the global ones (Kong's
`get_collected_iterator` falls back to `get_global_iterator` when `ctx.plugins` is nil). Only natively-run plugins
have these phases (plugin servers cannot). body_filter gets the body as nginx hands it over (`body_chunks`): a
proxied body in 4 KB proxy buffers with `eof = false`, then an empty last chunk with `eof = true` (no call for
HEAD, 204 and 304).
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import logging
import os
import time
from dataclasses import dataclass

import aiohttp
from aiohttp import web

from kong_emulator import KONG_VERSION
from kong_emulator.listeners.listener import KongResponse, continue_if_expected
from kong_emulator.pdk.serialize import serialize
from kong_emulator.plugin_servers.bridge import PluginProtocolError as StrictModeError
from kong_emulator.runloop.access_log import AccessLog
from kong_emulator.runloop.context import (
    ClientRequest,
    ExitResponse,
    Headers,
    LogSnapshot,
    RequestContext,
    UpstreamRequest,
    wire_text,
)
from kong_emulator.runloop.nginx_uri import normalize_request_path
from kong_emulator.tools import kong_errors

log = logging.getLogger("kong_emulator.proxy")
access_log = logging.getLogger("kong_emulator.access")

# RFC 9110 §7.6.1 hop-by-hop headers: never forwarded in either direction
HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authenticate",
}
PROXY_BUFFER = 4096  # nginx proxy_buffer_size / proxy_buffers: one memory page
# aiohttp sets these itself from the body it sends
_RECOMPUTED = {"content-length"}


@dataclass
class Engine:
    """Everything a request needs: config, router, plugins, balancer, upstream HTTP client."""

    conf: object  # conf.KongConf
    declarative: object  # entities.DeclarativeConfig
    router: object  # router.Router
    runner: object  # bridge.PluginRunner
    balancer: object  # balancer.Balancer
    infos: dict
    plugins_for: object  # plugins_iterator.plugins_for
    session: aiohttp.ClientSession | None = None
    strict: bool = False
    server_tokens: bool = True
    latency_tokens: bool = True
    request_id_header: bool = True
    strict_errors: list[str] | None = None
    pdk_env: object | None = None  # pdk.base.PDKEnv: trusted_ips, node id
    upstream_tls: object | None = None  # upstream_ssl.UpstreamTLS (built on first use from conf and kong.yml)
    resolver: object | None = None  # dns.KongResolver; None: names go to the HTTP client as they are

    @functools.cached_property
    def upstream_request_id(self) -> bool:
        """nginx_kong.lua `> if enabled_headers_upstream["X-Kong-Request-Id"]` (kong.conf headers_upstream)."""
        upstream_headers = getattr(self.conf, "headers_upstream", None)
        if upstream_headers is not None:
            return "x-kong-request-id" in {h.lower() for h in upstream_headers}
        return self.request_id_header

    def is_trusted(self, address: str) -> bool:
        return self.pdk_env is not None and self.pdk_env.is_trusted(address)


def _is_ip(value: str) -> bool:
    try:
        return bool(ipaddress.ip_address(value))
    except ValueError:
        return False


def build_client_request(request: web.Request, body: bytes, listen_port: int) -> ClientRequest:
    raw_path, _, raw_query = request.raw_path.partition("?")
    host_header = request.headers.get("Host", "")
    host = host_header.rsplit(":", 1)[0] if host_header and not host_header.endswith("]") else host_header
    peer = request.transport.get_extra_info("peername") if request.transport else None
    client_ip, client_port = (peer[0], peer[1]) if peer else ("127.0.0.1", 0)
    return ClientRequest(
        method=request.method,
        scheme="http",
        host=host.lower(),
        port=listen_port,
        path=normalize_request_path(raw_path),
        raw_path=raw_path,
        raw_query=raw_query,
        request_uri=request.raw_path,
        headers=Headers.from_raw(request.raw_headers),  # the bytes as sent, as Lua strings
        body=body,
        client_ip=client_ip,
        forwarded_ip=client_ip,
        http_version=float(f"{request.version.major}.{request.version.minor}"),
        start_time=time.time(),
        client_port=client_port,
    )


def body_chunks(body: bytes, proxied: bool) -> list[tuple[bytes, bool]]:
    """The ``(ngx.arg[1], ngx.arg[2])`` pairs body_filter gets: a proxied body in nginx's proxy buffers (one memory
    page each: ``proxy_buffers 8 4k`` on x86-64, Kong's templates keep the default) then the empty last buffer; a
    body Kong produced (exit, error) in one chunk then the last buffer. nginx's real chunking also follows the
    network timing; these are the smallest chunks Kong's defaults give."""
    if not body:
        return [(b"", True)]
    size = PROXY_BUFFER if proxied else len(body)
    return [(body[i : i + size], False) for i in range(0, len(body), size)] + [(b"", True)]


class Proxy:
    """One aiohttp handler per listener; `handle` is Kong's whole request lifecycle."""

    def __init__(self, engine: Engine, listen_port: int) -> None:
        self.engine = engine
        self.listen_port = listen_port
        self._log_tasks: set[asyncio.Task] = set()
        kong_errors.configure(engine.conf)  # error_template_* / error_default_type, as kong.configuration
        self.access_log = AccessLog(getattr(engine.conf, "raw", None) or {})
        self._plugins_memo: dict[tuple, list] = {}
        self._enabled_headers = getattr(engine.conf, "enabled_headers", None)  # the conf does not change

    def _plugins(self, route, service, consumer, phase: str) -> list:
        """``engine.plugins_for`` for this scope and phase, remembered (the configuration does not change)."""
        key = (route and route.id, service and service.id, consumer and consumer.id, phase)
        plugins = self._plugins_memo.get(key)
        if plugins is None:
            engine = self.engine
            plugins = engine.plugins_for(engine.declarative, route, service, consumer, phase, engine.infos)
            runs = getattr(engine.runner, "runs", None)  # natives with nothing to do in this phase are left out
            plugins = [p for p in plugins if runs is None or runs(p, phase)]
            if len(self._plugins_memo) > 65536:
                self._plugins_memo.clear()
            self._plugins_memo[key] = plugins
        return plugins

    async def handle(self, request: web.Request) -> web.StreamResponse:
        too_large = False
        try:
            await continue_if_expected(request)
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            # nginx refuses a body over client_max_body_size with 413 before any Lua phase runs; Kong's
            # `error_page 400 404 408 411 412 413 ... /kong_error_handler` turns it into Kong's error body
            # (kong/templates/nginx_kong.lua, kong/error_handlers.lua: 413 = "Payload too large").
            body, too_large = b"", True
        creq = build_client_request(request, body, self.listen_port)
        creq.forwarded_ip = self._realip(creq)
        ctx = RequestContext(request=creq, request_id=os.urandom(16).hex())  # $kong_request_id: 16 random bytes
        t0 = time.monotonic()
        try:
            if too_large:
                ctx.exit = self._handler_error(ctx, 413)
                status, headers, out_body = await self._finish_exit(ctx, t0)
            else:
                status, headers, out_body = await self._lifecycle(ctx, t0)
        except StrictModeError as exc:
            self._strict_failure(ctx, exc)
            status, headers, out_body = await self._emulator_error(ctx, str(exc))
        except Exception as exc:
            log.exception("unexpected error while proxying %s %s", creq.method, creq.raw_path)
            status, headers, out_body = await self._emulator_error(ctx, repr(exc))
        ctx.latencies["request"] = int((time.monotonic() - t0) * 1000)
        response = KongResponse(status=status, body=out_body)
        keep_length = creq.method == "HEAD" and not out_body  # HEAD: the length the GET body would have
        out = response.headers
        for lname, (name, value) in zip(headers.lower_names(), headers.items(), strict=True):
            if lname not in HOP_BY_HOP and (lname != "content-length" or keep_length):
                out.add(name if name.isascii() else wire_text(name), value if value.isascii() else wire_text(value))
        if self.access_log.enabled and access_log.isEnabledFor(logging.INFO):  # nobody reads a line not written
            access_log.info("%s", self.access_log.line(ctx, status, len(out_body)))
        self._schedule_log(ctx, status, headers, len(out_body))
        return response

    async def _lifecycle(self, ctx: RequestContext, t0: float) -> tuple[int, Headers, bytes]:
        engine = self.engine
        ctx.phase = "rewrite"
        await self._run_plugins(ctx, "rewrite", global_only=True)
        if ctx.exit is None:
            # the router reads $request_uri, not nginx's decoded $uri: atc.lua:446-449 strip_uri_args(var.request_uri)
            # = router/utils.lua:57-63 normalize(req_uri, true) (tools/uri.lua:78-165: reserved %XX stay encoded)
            match = engine.router.match(
                ctx.request.method, ctx.request.host, ctx.request.raw_path, ctx.request.headers, ctx.request.scheme
            )
            if match is None:
                # handler.lua access.before: `return kong.response.error(404, "no Route matched with those values")`
                # -- a kong.response.error, so the template follows Accept and get_source() is "exit"
                ctx.exit = kong_errors.runloop_error(ctx, 404, kong_errors.NO_ROUTE)
            else:
                self._bind_route(ctx, match)
                ctx.phase = "access"
                await self._run_plugins(ctx, "access")
        if ctx.exit is not None:
            # a plugin may set ngx.ctx.KONG_PROXIED before its exit (proxy-cache's Hit): proxied response headers
            return await self._finish_exit(ctx, t0, proxied=bool(getattr(ctx, "kong_proxied", False)))
        return await self._proxy_upstream(ctx, t0)

    def _bind_route(self, ctx: RequestContext, match) -> None:
        ctx.route, ctx.service, ctx.captures = match.route, match.service, match.captures
        # `match_t.prefix` (X-Forwarded-Prefix): what strip_path removed
        ctx.router_prefix = match.matched_path if match.route.strip_path else None  # type: ignore[attr-defined]
        headers = ctx.request.headers.without(HOP_BY_HOP)
        ctx.upstream = UpstreamRequest(
            method=ctx.request.method,
            path=match.upstream_path,
            raw_query=ctx.request.raw_query,
            headers=headers,
            scheme=match.service.protocol if match.service else "http",
        )

    async def _run_plugins(self, ctx: RequestContext, phase: str, global_only: bool = False) -> None:
        engine = self.engine
        route = None if global_only else ctx.route
        service = None if global_only else ctx.service
        for plugin in self._plugins(route, service, ctx.consumer, phase):
            if ctx.exit is not None:
                return
            if phase == "response" and self._has_filters(plugin):
                continue  # its header_filter/body_filter run in the filter phases below, for every response
            ctx.current_plugin = plugin
            await engine.runner.run_phase(plugin, phase, ctx)
        ctx.current_plugin = None

    def _realip(self, creq: ClientRequest) -> str:
        """ngx_http_realip_module: from a trusted peer, take the address from `real_ip_header`."""
        engine = self.engine
        if not engine.is_trusted(creq.client_ip):
            return creq.client_ip
        conf = engine.conf
        header = conf.real_ip_header
        if header.lower() == "proxy_protocol":
            return creq.client_ip
        values = [v.strip() for raw in creq.headers.get_all(header) for v in raw.split(",") if v.strip()]
        # ngx_http_get_forwarded_addr_internal: an address that does not parse declines the whole header (the peer
        # stays $remote_addr), so "not-an-ip" from a trusted peer never becomes the client address.
        if not values or not all(_is_ip(v) for v in values):
            return creq.client_ip
        if not conf.real_ip_recursive:
            return values[-1]
        for addr in reversed(values):  # the first address from the right that is not itself trusted
            if not engine.is_trusted(addr):
                return addr
        return values[0]

    # -- exits --------------------------------------------------------------------------------------------

    def _handler_error(self, ctx: RequestContext, status: int) -> ExitResponse:
        default_type = getattr(self.engine.conf, "raw", {}).get("error_default_type", "text/plain")
        return kong_errors.handler_error(ctx, status, default_type)

    async def _finish_exit(
        self, ctx: RequestContext, t0: float, proxied: bool = False, filters: bool = True
    ) -> tuple[int, Headers, bytes]:
        exit_: ExitResponse = ctx.exit  # type: ignore[assignment]
        ctx.response.source = exit_.source
        headers = Headers()
        for name, value in ctx.response.headers.items():
            headers.add(name, value)
        for name, value in exit_.headers.items():
            headers.set(name, value)
        if not proxied or getattr(ctx, "kong_proxied", False):  # KONG_RESPONSE_LATENCY
            ctx.latencies["kong"] = int((time.monotonic() - t0) * 1000)
        status, body = exit_.status, exit_.body
        if filters:
            status, headers, body = await self._filters(ctx, status, headers, body)
        self._kong_headers(ctx, headers, proxied)
        return status, headers, body

    # -- header_filter / body_filter ----------------------------------------------------------------------

    def _has_filters(self, plugin) -> bool:
        info = self.engine.infos.get(plugin.name)
        phases = getattr(info, "phases", ()) or ()
        return "header_filter" in phases or "body_filter" in phases

    def _filter_plugins(self, ctx: RequestContext, phase: str, exit_: ExitResponse | None) -> list:
        """The request's plugins with `phase`, in handler order; on an exit also the natives that stand in for
        header_filter with `response` + `exit_filter` (e.g. native/cors.py)."""
        engine = self.engine
        scope = (engine.declarative, ctx.route, ctx.service, ctx.consumer)
        plugins = list(self._plugins(ctx.route, ctx.service, ctx.consumer, phase))
        if phase == "header_filter" and exit_ is not None:
            natives = getattr(engine.runner, "natives", None) or {}
            extra = [
                p
                for p in engine.plugins_for(*scope, "response", engine.infos)
                if not self._has_filters(p) and hasattr(natives.get(p.name), "exit_filter")
            ]
            if extra:  # Kong's handler order: priority descending, then name descending
                infos = engine.infos
                plugins = sorted(plugins + extra, key=lambda p: (infos[p.name].priority, p.name), reverse=True)
        return plugins

    async def _filters(
        self, ctx: RequestContext, status: int, headers: Headers, body: bytes
    ) -> tuple[int, Headers, bytes]:
        """Kong.header_filter then Kong.body_filter over the response about to be sent (`headers` is changed in
        place); a Lua error in a proxied response's header_filter ends as Kong's 500."""
        exit_ = ctx.exit
        header_plugins = self._filter_plugins(ctx, "header_filter", exit_)
        body_plugins = self._filter_plugins(ctx, "body_filter", exit_)
        if not header_plugins and not body_plugins:
            return status, headers, body
        engine = self.engine
        ctx.response.status, ctx.response.headers, ctx.response.body = status, headers, body
        ctx.phase = "header_filter"
        for plugin in header_plugins:
            ctx.current_plugin = plugin
            if self._has_filters(plugin):
                await engine.runner.run_phase(plugin, "header_filter", ctx)
            else:
                engine.runner.natives[plugin.name].exit_filter(plugin, ctx, ctx.response.headers, exit_)
            if ctx.exit is not exit_:  # an error (or an exit) in header_filter: that response, unfiltered
                ctx.current_plugin = None
                new = ctx.exit
                merged = ctx.response.headers.copy()
                for name, value in new.headers.items():
                    merged.set(name, value)
                return new.status, merged, new.body
        headers = ctx.response.headers
        status = ctx.response.status or status
        if body_plugins and status not in (204, 304) and ctx.request.method != "HEAD":
            ctx.phase = "body_filter"
            out: list[bytes] = []
            for chunk, eof in body_chunks(body, ctx.response.source == "service"):
                arg = [chunk, eof]
                ctx.body_filter_arg = arg  # ngx.arg of this call, shared by every plugin's body_filter
                for plugin in body_plugins:
                    ctx.current_plugin = plugin
                    await engine.runner.run_phase(plugin, "body_filter", ctx)
                out.append(arg[0] or b"")
                if arg[1]:  # ngx.arg[2] = true: the body ends here
                    break
            del ctx.body_filter_arg
            filtered = b"".join(out)
            if filtered != body:
                headers.clear("Content-Length")
                body = filtered
        ctx.current_plugin = None
        ctx.response.body = body
        return status, headers, body

    def enabled(self, name: str) -> bool:
        """kong.configuration.enabled_headers (kong.conf `headers`, token groups expanded)."""
        enabled = self._enabled_headers
        if enabled is None:  # an Engine built without a KongConf: the old per-group flags
            group = {"server": "server_tokens", "via": "server_tokens", "x-kong-request-id": "request_id_header"}
            return bool(getattr(self.engine, group.get(name, "latency_tokens")))
        return name in enabled

    def _kong_headers(self, ctx: RequestContext, headers: Headers, proxied: bool = False) -> None:
        """kong/runloop/handler.lua `header_filter.after`, keyed on ctx.KONG_PROXIED (set once access finished and
        Kong intends to proxy -- so it also holds for 502/504 upstream failures, not for 404/503/plugin exits)."""
        server = f"kong/{KONG_VERSION}"
        if proxied:
            # an exit with KONG_PROXIED (proxy-cache Hit) has no KONG_WAITING_TIME/KONG_PROXY_LATENCY: nil = no header
            plugin_proxied = bool(getattr(ctx, "kong_proxied", False))
            if self.enabled("x-kong-upstream-latency") and not plugin_proxied:
                headers.set("X-Kong-Upstream-Latency", str(ctx.latencies.get("proxy", 0)))
            if self.enabled("x-kong-proxy-latency") and not plugin_proxied:
                headers.set("X-Kong-Proxy-Latency", str(ctx.latencies.get("kong", 0)))
            if self.enabled("via"):
                # kong_outbound_via = proxy_http_version .. " " .. SERVER_HEADER, after the upstream's own Via
                kong_via = f"1.1 {server}"
                resp_via = ", ".join(ctx.upstream_headers.get_all("Via")) if ctx.upstream_headers is not None else ""
                headers.set("Via", f"{resp_via}, {kong_via}" if resp_via else kong_via)
            # "If upstream does not provide the 'Server' header ... We override it with the Kong server header."
            if "Server" not in headers and self.enabled("server"):
                headers.set("Server", server)
        else:
            if self.enabled("x-kong-response-latency"):
                headers.set("X-Kong-Response-Latency", str(ctx.latencies.get("kong", 0)))
            if not (self.enabled("via") and headers.get("Via") == server):
                if self.enabled("server"):
                    headers.set("Server", server)
                else:
                    headers.clear("Server")
        if self.enabled("x-kong-request-id"):
            headers.set("X-Kong-Request-Id", ctx.request_id)

    async def _emulator_error(self, ctx: RequestContext, detail: str) -> tuple[int, Headers, bytes]:
        ctx.exit = self._handler_error(ctx, 500)
        ctx.response.source = "error"
        headers = Headers(list(ctx.exit.headers.items()))
        status, body = 500, ctx.exit.body
        try:  # Kong's error handler response goes through header_filter/body_filter too
            status, headers, body = await self._filters(ctx, status, headers, body)
        except Exception:
            log.exception("header_filter/body_filter failed on the emulator's 500")
            status, headers, body = 500, Headers(list(ctx.exit.headers.items())), ctx.exit.body
        self._kong_headers(ctx, headers)
        return status, headers, body

    def _strict_failure(self, ctx: RequestContext, exc: Exception) -> None:
        message = f"STRICT MODE: plugin protocol failure on {ctx.request.method} {ctx.request.raw_path}: {exc}"
        log.error(message)
        if self.engine.strict_errors is not None:
            self.engine.strict_errors.append(message)

    # -- upstream -----------------------------------------------------------------------------------------

    async def _proxy_upstream(self, ctx: RequestContext, t0: float) -> tuple[int, Headers, bytes]:
        from kong_emulator.runloop import upstream

        result = await upstream.send(self.engine, ctx, t0)
        if ctx.exit is not None:  # balancer / connect / timeout failures become Kong errors
            # a 503 from the balancer comes from access.after, before `ctx.KONG_PROXIED = true` (kong/init.lua);
            # 502/504 are nginx errors after it, rendered by kong/error_handlers.lua with the proxied headers
            return await self._finish_exit(ctx, t0, proxied=ctx.exit.source == "error")
        status, headers, body = result
        ctx.upstream_status, ctx.upstream_headers, ctx.upstream_body = status, headers, body
        # handler.lua header_filter.before: "clear hop-by-hop response headers" named in the upstream's Connection
        listed = set()
        connection = ", ".join(headers.get_all("Connection"))
        if connection and connection not in ("keep-alive", "close", "upgrade"):
            listed = {t.strip().lower() for t in connection.split(",")} - {"close", "upgrade", "keep-alive"}
        out = headers.without(HOP_BY_HOP | listed if listed else HOP_BY_HOP)
        for name, value in ctx.response.headers.items():  # what access-phase plugins set wins
            out.set(name, value)
        ctx.response.headers, ctx.response.status, ctx.response.source = out, status, "service"
        ctx.phase = "response"
        await self._run_plugins(ctx, "response")  # buffered proxying: plugins see (and may replace) it all
        if ctx.exit is not None:  # an exit in `response` comes after KONG_PROXIED was set
            return await self._finish_exit(ctx, t0, proxied=True)
        out = ctx.response.headers
        status = ctx.response.status or status
        body = body if ctx.response.body is None else ctx.response.body
        status, out, body = await self._filters(ctx, status, out, body)
        self._kong_headers(ctx, out, proxied=True)
        return status, out, body

    # -- log phase ----------------------------------------------------------------------------------------

    def _schedule_log(self, ctx: RequestContext, status: int, headers: Headers, size: int) -> None:
        """Kong runs `log` in a timer after the response went out, against a snapshot."""
        if ctx.route is None:
            if not self._plugins(None, None, None, "log"):
                return
        elif not self._plugins(ctx.route, ctx.service, ctx.consumer, "log"):
            return  # no plugin has a log handler for this request: Kong runs nothing, serializes nothing
        record = serialize(ctx, status, headers, size)
        ctx.snapshot = LogSnapshot.take(ctx, record, headers, status)
        task = asyncio.get_running_loop().create_task(self._log_phase(ctx))
        self._log_tasks.add(task)
        task.add_done_callback(self._log_tasks.discard)

    async def _log_phase(self, ctx: RequestContext) -> None:
        await asyncio.sleep(0)
        ctx.phase = "log"
        ctx.exit = None
        try:
            await self._run_plugins(ctx, "log", global_only=ctx.route is None)
        except StrictModeError as exc:
            self._strict_failure(ctx, exc)
        except Exception:
            log.exception("log phase failed")

    async def drain(self) -> None:
        if self._log_tasks:
            await asyncio.gather(*self._log_tasks, return_exceptions=True)
