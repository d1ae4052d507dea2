"""Start-up and shutdown, in Kong's order: conf → plugin info (query commands) → kong.yml → plugin servers → listen.

Any configuration error stops the start with one line naming the entity and field, and a non-zero exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Mapping

import aiohttp
import uvloop
from aiohttp import web

from kong_emulator import KONG_VERSION
from kong_emulator.config import conf as conf_mod
from kong_emulator.config.declarative import BUNDLED_PLUGINS, load_declarative
from kong_emulator.config.errors import ConfigError
from kong_emulator.listeners import tls
from kong_emulator.listeners.listener import KongAppRunner
from kong_emulator.listeners.status import ServerStats, StatusAPI, status_listeners
from kong_emulator.native import NativeRunner, lua_plugins, sandbox_settings, with_native_infos
from kong_emulator.pdk.base import PDKEnv
from kong_emulator.plugin_servers.bridge import PluginRunner
from kong_emulator.plugin_servers.pluginserver import PluginServerError, PluginServers
from kong_emulator.router.traditional import Router
from kong_emulator.runloop.balancer import Balancer
from kong_emulator.runloop.dns import KongResolver
from kong_emulator.runloop.healthcheck import HealthCheckers
from kong_emulator.runloop.plugins_iterator import plugins_for
from kong_emulator.runloop.proxy import Engine, Proxy
from kong_emulator.runloop.upstream_ssl import UpstreamTLS, probe_context

log = logging.getLogger("kong_emulator")

LOG_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "notice": logging.INFO,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "crit": logging.CRITICAL,
}


class StartupError(Exception):
    """Kong would refuse to start: the message is all the operator needs."""


class Emulator:
    """The running emulator: plugin servers, the engine, one aiohttp site per proxy listener."""

    def __init__(self, kong_conf) -> None:
        self.conf = kong_conf
        self.servers = PluginServers(kong_conf.pluginservers)
        self.engine: Engine | None = None
        self.runners: list[web.AppRunner] = []
        self.proxies: list[Proxy] = []
        self.stats = ServerStats()  # kong.nginx.get_statistics() for the Status API
        self.status_api: StatusAPI | None = None
        self.health: HealthCheckers | None = None

    async def start(self) -> None:
        conf = self.conf
        try:
            infos = await self.servers.query_all()
        except (PluginServerError, ConfigError) as exc:
            raise StartupError(str(exc)) from exc
        infos = with_native_infos(infos)  # bundled plugins the emulator runs itself (kong_emulator.native)
        try:  # custom Lua plugins on lua_package_path win over a plugin server of the same name (plugins.lua:163)
            infos.update(lua_plugins.load_infos(conf.plugins, lua_plugins.package_path(conf.raw, conf.prefix)))
        except ConfigError as exc:
            raise StartupError(str(exc)) from exc
        enabled = _enabled_plugins(conf.plugins, infos)
        if not conf.declarative_config:
            raise StartupError("declarative_config is not set (database = off needs a kong.yml)")
        try:
            declarative = load_declarative(conf.declarative_config, infos, enabled, set(BUNDLED_PLUGINS))
        except ConfigError as exc:
            raise StartupError(f"error parsing declarative config file {conf.declarative_config}:\n{exc}") from exc
        except OSError as exc:
            raise StartupError(f"cannot read declarative config {conf.declarative_config}: {exc.strerror}") from exc
        for name in declarative.unsupported_plugins:
            log.error(
                "[emulator] bundled Lua plugin '%s' is configured in kong.yml, but the emulator cannot run Lua: "
                "it is NOT applied here (real Kong applies it)",
                name,
            )
        if (conf.raw.get("nginx_proxy_proxy_ssl_verify") or "off").lower() != "on":
            for service in declarative.services.values():
                if service.protocol == "https" and service.tls_verify is None:
                    log.warning(
                        "[emulator] service '%s' is https without tls_verify: Kong does not verify its certificate",
                        service.name or service.id,
                    )
        await self._start_servers()
        self.engine = self._engine(declarative, infos)
        await self._listen()
        await self._listen_status(enabled)
        self.health = HealthCheckers(
            self.engine.balancer.upstreams.values(),
            self.engine.resolver,
            lambda b: probe_context(conf.raw, b.checks["active"]),
        )
        self.health.start()

    async def _start_servers(self) -> None:
        try:
            await self.servers.start_all()
        except PluginServerError as exc:
            raise StartupError(str(exc)) from exc

    def _engine(self, declarative, infos) -> Engine:
        conf = self.conf
        headers = {h.strip().lower() for h in conf.headers}
        env = PDKEnv(trusted_ips=[ip for ip in conf.trusted_ips if ip != "unix:"], consumers=declarative.consumers)
        external = PluginRunner(
            self.servers.sockets(),
            infos=infos,
            reply_timeout=conf.emulator_reply_timeout,
            strict=conf.emulator_strict,
            workers=conf.nginx_worker_processes,
            env=env,
        )
        try:
            untrusted_lua, requires = sandbox_settings(conf.raw)
        except ConfigError as exc:
            raise StartupError(str(exc)) from exc
        runner = NativeRunner(external, untrusted_lua=untrusted_lua, sandbox_requires=requires, infos=infos)
        runner.report(declarative)
        return Engine(
            conf=conf,
            declarative=declarative,
            router=Router(declarative.routes, declarative.services),
            runner=runner,
            balancer=Balancer(declarative.upstreams),
            infos=infos,
            plugins_for=plugins_for,
            session=aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=60), auto_decompress=False
            ),
            strict=conf.emulator_strict,
            server_tokens="server_tokens" in headers or "off" not in headers,
            latency_tokens="latency_tokens" in headers,
            request_id_header="x-kong-request-id" in headers,
            strict_errors=[],
            pdk_env=env,
            upstream_tls=UpstreamTLS(conf.raw, declarative.ca_certificates),
            resolver=KongResolver(conf.raw.get("dns_hostsfile") or "/etc/hosts"),
        )

    async def _listen(self) -> None:
        listeners = self.conf.proxy_listen
        if not listeners:
            raise StartupError("proxy_listen is off: the emulator has nothing to serve")
        tls_ctx = self._tls_context() if any(listener.ssl for listener in listeners) else None
        for host, port, flags in listeners:
            secure = "ssl" in flags
            proxy = (tls.HTTPSProxy if secure else Proxy)(self.engine, port)
            app = web.Application(client_max_size=self.conf.client_max_body_size, middlewares=[self.stats.middleware])
            app.router.add_route("*", r"/{tail:[\s\S]*}", proxy.handle)  # any path, a decoded %0A included
            runner = KongAppRunner(app, access_log=None, handle_signals=False, server_tokens=proxy.enabled("server"))
            await runner.setup()
            self.stats.watch(runner.server)
            site_tls = tls_ctx if secure else None
            await web.TCPSite(runner, host, port, reuse_address=True, ssl_context=site_tls).start()
            self.runners.append(runner)
            self.proxies.append(proxy)
            scheme = "https" if secure else "http"
            log.info("[emulator] Kong %s emulator listening on %s://%s:%d", KONG_VERSION, scheme, host, port)
            if "http2" in flags:
                log.warning(
                    "[emulator] %s:%d has `http2`: Kong speaks HTTP/2 there, the emulator HTTP/1.1 only", host, port
                )

    def _tls_context(self):
        """Kong's TLS for `ssl` listeners (listeners/tls.py): ssl_cert/ssl_cert_key or Kong's default certificate."""
        try:
            settings = tls.settings_from_conf(self.conf.raw, self.conf.prefix)
            ctx = tls.server_context(settings)
        except ConfigError as exc:
            raise StartupError(str(exc)) from exc
        except OSError as exc:
            raise StartupError(f"could not prepare the SSL certificate in {self.conf.prefix}: {exc}") from exc
        if settings.generated:
            log.info("[emulator] no ssl_cert set: using Kong's default certificate %s", settings.certs[0][0])
        return ctx

    async def _listen_status(self, enabled: set[str]) -> None:
        """Kong's Status API on `status_listen` (default `off`): /status, /status/ready, prometheus' /metrics."""
        try:
            listeners = status_listeners(self.conf.raw)
        except ConfigError as exc:
            raise StartupError(str(exc)) from exc
        if not listeners:
            return
        self.status_api = StatusAPI(self.engine, self.stats, prometheus_loaded="prometheus" in enabled)
        try:
            await self.status_api.start(listeners)
        except OSError as exc:
            raise StartupError(f"status_listen: cannot listen: {exc.strerror}") from exc

    async def stop(self) -> None:
        if self.health is not None:
            await self.health.stop()
        if self.status_api is not None:
            await self.status_api.stop()
        for proxy in self.proxies:
            await proxy.drain()
        for runner in self.runners:
            await runner.cleanup()
        if self.engine is not None:
            await self.engine.runner.close()
            await self.engine.session.close()
        await self.servers.stop_all()


def _enabled_plugins(plugins: list[str], infos: Mapping) -> set[str]:
    enabled = set()
    for name in plugins:
        if name == "bundled":
            enabled.update(BUNDLED_PLUGINS)
        elif name != "off":
            enabled.add(name)
    missing = sorted(n for n in enabled if n not in infos and n not in BUNDLED_PLUGINS)
    if missing:
        raise StartupError(f"{missing[0]} plugin is enabled but not installed; no plugin found")
    return enabled


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=LOG_LEVELS.get(level, logging.INFO),
        format="%(asctime)s [%(levelname)s] %(name)s: %(message)s",
        datefmt="%Y/%m/%d %H:%M:%S",
        stream=sys.stderr,
    )


async def serve(kong_conf) -> int:
    emulator = Emulator(kong_conf)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await emulator.start()
    except StartupError as exc:
        log.critical("%s", exc)
        with contextlib.suppress(Exception):
            await emulator.stop()
        return 1
    await stop.wait()
    await emulator.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="kong-emulator", description="A protocol-faithful stand-in for Kong 3.x")
    parser.add_argument("-c", "--conf", help="kong.conf (KONG_* environment variables override it)")
    args = parser.parse_args(argv)
    try:
        kong_conf = conf_mod.load_kong_conf(args.conf, os.environ)
    except ConfigError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    configure_logging(kong_conf.log_level)
    return uvloop.run(serve(kong_conf))  # libuv's loop, as nginx runs on its own: a third of the CPU per request
