"""Kong's side of each external-plugin event, for one simulated nginx worker (Kong 3.9+ / master).

* instances (`kong/runloop/plugin_servers/plugin.lua` ``get_instance_id``): keyed by the plugin id, created lazily
  with ``plugin.StartInstance`` (``Config`` = the cjson-encoded config + Kong's ``__*`` fields), reused while
  ``id``, ``__seq__`` and ``__plugin_id`` match; a new seq starts a new instance and then closes the old one;
  concurrent requests wait for a claim in 0.1 s steps (10 s at most);
* events (`rpc/mp_rpc.lua` ``handle_event``/``bridge_loop``): HandleEvent, then one PDK call per Step until
  ``"ret"`` or a terminal exit/error (after which nothing more is sent); "no plugin instance" → reset the plugin's
  instances in this worker at once and in every worker (this one included) when the posted worker event arrives,
  warn, start again and retry, without a cap (mp_rpc.lua:312-316); any other error → ``kong.log.err`` and the request
  goes on (fail-open, faithful) — or `PluginProtocolError` in strict mode; a Lua error → 500 in
  rewrite/access/response, only logged in log.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kong_emulator.config.entities import DEFAULT_WS_ID, Plugin
from kong_emulator.pdk import PDK, STEP_METHODS, TERMINAL_METHODS, Call, LuaError, PDKEnv, step_method_for
from kong_emulator.pdk.base import to_lua
from kong_emulator.pdk.response import unexpected_error
from kong_emulator.plugin_servers.rpc import (
    KONG_POOL_SIZE,
    KONG_READ_TIMEOUT,
    RpcClient,
    RPCError,
    RPCLuaError,
    SocketPool,
)
from kong_emulator.runloop.context import RequestContext

log = logging.getLogger("kong_emulator.bridge")

CLAIM_SLEEP = 0.1  # get_instance_id: SLEEP_STEP
CLAIM_STEPS = 100  # WAIT_TIME / SLEEP_STEP
# kong.worker_events.post → resty.events broker → every worker: the emulator delivers a posted worker event this
# long after the post (a broker round trip; tests widen it to see the window)
WORKER_EVENT_DELAY = 0.005


def config_json(conf: dict[str, Any]) -> str:
    """``cjson.encode(conf)``: compact, ``/`` escaped, unset optional fields as ``null`` (they are ngx.null)."""
    return json.dumps(conf, separators=(",", ":"), ensure_ascii=False).replace("/", "\\/")


class PluginProtocolError(RuntimeError):
    """Strict mode: a plugin-server failure that Kong would only log (the request would fail open)."""


@dataclass
class _Instance:
    """``running_instances[key]``: ``id`` is None while a request is starting it (the claim)."""

    conf: dict[str, Any]
    seq: Any
    id: int | None = None
    plugin_name: str = ""


class PluginRunner:
    """What the proxy talks to: ``workers`` simulated nginx workers, each with its own instances, msgids and pools.

    A request is pinned to one worker (round robin, ``ctx.worker_id``) for all its phases, log included.
    ``sockets`` maps plugin name → Unix socket (``PluginServers.sockets()``); ``infos`` (plugin name → PluginInfo)
    limits events to the phases a plugin declares, as Kong only builds handlers for those.
    """

    def __init__(
        self,
        sockets: Mapping[str, str],
        *,
        infos: Mapping[str, Any] | None = None,
        workers: int = 1,
        env: PDKEnv | None = None,
        strict: bool = False,
        reply_timeout: float = KONG_READ_TIMEOUT,
        pool_size: int = KONG_POOL_SIZE,
        fresh_every: int = 0,
        trace: list | None = None,
    ) -> None:
        pdk = PDK(env)
        self.infos = dict(infos or {})
        self.workers = [
            Worker(sockets, pdk, i, strict=strict, reply_timeout=reply_timeout, pool_size=pool_size,
                   fresh_every=fresh_every, trace=trace)
            for i in range(max(1, int(workers)))
        ]  # fmt: skip
        for w in self.workers:
            w.peers = self.workers
        self._next = 0

    @property
    def pdk(self) -> PDK:
        return self.workers[0].pdk

    def worker_for(self, ctx: RequestContext) -> Worker:
        """The request's worker, assigned round robin on its first event."""
        if ctx.worker_id is None:
            ctx.worker_id = self._next
            self._next = (self._next + 1) % len(self.workers)
        return self.workers[ctx.worker_id % len(self.workers)]

    async def run_phase(self, plugin: Plugin, phase: str, ctx: RequestContext) -> None:
        """Run ``phase`` of ``plugin`` for ``ctx`` as Kong does; an exit/error response ends up in ``ctx.exit``.

        Raises `PluginProtocolError` only in strict mode, for failures that Kong would log and let through.
        """
        info = self.infos.get(plugin.name)
        if info is not None and phase not in info.phases:
            return
        await self.worker_for(ctx).run_phase(plugin, phase, ctx)

    def bump_seq(self) -> None:
        """A configuration rebuild: every plugin config gets a new ``__seq__`` (Kong 3.6+: one shared counter)."""
        for w in self.workers:
            w.seq += 1

    async def close(self) -> None:
        """Close every idle pooled connection."""
        for w in self.workers:
            w.close()


class Worker:
    """One simulated worker: its instance table, one `RpcClient` per plugin, one `SocketPool` per socket."""

    def __init__(
        self,
        sockets: Mapping[str, str],
        pdk: PDK,
        worker_id: int = 0,
        *,
        strict: bool = False,
        reply_timeout: float = KONG_READ_TIMEOUT,
        pool_size: int = KONG_POOL_SIZE,
        fresh_every: int = 0,
        trace: list | None = None,
    ) -> None:
        self.sockets = dict(sockets)
        self.pdk = pdk
        self.strict = strict
        self.reply_timeout = reply_timeout
        self.worker_id = worker_id
        self.seq = 1  # plugins_iterator's __seq__
        self.trace = trace  # (method, params) of every RPC, for tests
        self.pools = {path: SocketPool(path, pool_size, fresh_every) for path in set(self.sockets.values())}
        self._rpcs: dict[str, RpcClient] = {}
        self._instances: dict[str, _Instance] = {}
        self.peers: list[Worker] = [self]
        self.event_delay = WORKER_EVENT_DELAY

    def rpc(self, plugin_name: str) -> RpcClient:
        """The plugin's Rpc object (msgid from 1), created on first use."""
        rpc = self._rpcs.get(plugin_name)
        if rpc is None:
            pool = self.pools[self.sockets[plugin_name]]
            rpc = RpcClient(pool, self.reply_timeout, trace=self.trace)
            rpc.on_notification = lambda label, args: self._notification(rpc, label, args)
            self._rpcs[plugin_name] = rpc
        return rpc

    def close(self) -> None:
        """Close the idle pooled connections."""
        for pool in self.pools.values():
            pool.close()

    # -- events ---------------------------------------------------------------------------------------

    async def run_phase(self, plugin: Plugin, phase: str, ctx: RequestContext) -> None:
        """``plugin[phase](self, conf)``: one event; Lua errors handled like Kong's phase runner."""
        ctx.phase = phase
        ctx.current_plugin = plugin
        call = self.pdk.new_call(ctx, phase, plugin.name)
        try:
            while await self._handle_event(plugin, call):
                pass  # Kong's `return self:handle_event(conf, phase)`: a tail call, so no depth limit either
        except LuaError as exc:
            self._lua_error(call, exc)

    async def _handle_event(self, plugin: Plugin, call: Call) -> bool:
        """``Rpc:handle_event``; True when Kong would call it again ("no plugin instance")."""
        try:
            instance_id = self._running_id(plugin)
            if instance_id is None:
                instance_id = await self._instance_id(plugin)
            await self._bridge_loop(plugin.name, instance_id, call)
        except RPCLuaError as exc:
            raise LuaError(str(exc)) from None
        except RPCError as exc:
            err = str(exc)
            if "no plugin instance" in err.lower():
                self.reset_instances(plugin.name)
                call.log("warn", err)
                return True
            call.log("err", err)
            if self.strict:
                raise PluginProtocolError(f"{plugin.name} {call.phase}: {err}") from exc
        return False

    async def _bridge_loop(self, plugin_name: str, instance_id: int, call: Call) -> None:
        """``bridge_loop``: HandleEvent, then Step* until "ret" or a terminal call."""
        rpc = self.rpc(plugin_name)
        step = await rpc.call("plugin.HandleEvent", {"InstanceId": instance_id, "EventName": call.phase})
        event_id = step.get("EventId") if isinstance(step, dict) else None
        while True:
            data = step.get("Data") if isinstance(step, dict) else None
            if data == "ret":
                return
            if not isinstance(data, dict):
                raise LuaError(f"attempt to index field 'Data' (a {type(data).__name__} value)")
            method = data.get("Method")
            result = self.pdk.call(call, method, data.get("Args"))
            if method in TERMINAL_METHODS:
                return  # Kong yields (access) or ngx.exit()s: no Step for this event ever again
            params = {"EventId": event_id} if result is None else {"EventId": event_id, "Data": result}
            step_method = STEP_METHODS.get(method, "plugin.Step") if type(result) is not dict else None
            step = await rpc.call(step_method or step_method_for(method, result), params)

    def _lua_error(self, call: Call, exc: LuaError) -> None:
        """A Lua error out of the phase handler: logged; outside log, Kong answers 500 (KONG_UNEXPECTED)."""
        call.log("err", str(exc))
        if call.phase != "log" and call.ctx.exit is None:
            call.ctx.exit = unexpected_error(call.ctx, call.phase)
            call.ctx.response.source = "error"

    # -- instances ------------------------------------------------------------------------------------

    def plugin_conf(self, plugin: Plugin) -> dict[str, Any]:
        """The conf Kong encodes for StartInstance: the normalised config plus Kong's injected fields."""
        conf = dict(plugin.config)
        for key in ("route_id", "service_id", "consumer_id"):
            value = getattr(plugin, key)
            if value:
                conf[key] = value
        if plugin.instance_name:
            conf["plugin_instance_name"] = plugin.instance_name
        conf["__plugin_id"] = plugin.id
        conf["__key__"] = plugin.cache_key
        conf["__seq__"] = getattr(plugin, "seq", None) or self.seq
        conf["__ws_id"] = DEFAULT_WS_ID
        return conf

    async def _instance_id(self, plugin: Plugin) -> int:
        """``get_instance_id``."""
        key = plugin.id
        info = self._instances.get(key)
        waited = 0
        while info is not None and info.id is None:  # some other request is starting it
            await asyncio.sleep(CLAIM_SLEEP)
            waited += 1
            if waited > CLAIM_STEPS:
                self._instances.pop(key, None)
                raise RPCError(f"Could not claim instance_id for {plugin.name} (key: {key})")
            info = self._instances.get(key)
        running = self._running_id(plugin)
        if running is not None:
            return running
        conf = self.plugin_conf(plugin)
        old_id = info.id if info is not None else None
        if info is None:
            info = self._instances[key] = _Instance(conf=conf, seq=conf["__seq__"])
        else:
            info.id = None
        return await self._start_instance(plugin, info, conf, old_id)

    def _running_id(self, plugin: Plugin) -> int | None:
        """The instance id ``get_instance_id`` reuses as it is: same ``__seq__`` and ``__plugin_id``, not claimed."""
        info = self._instances.get(plugin.id)
        if info is None or info.id is None:
            return None
        seq = getattr(plugin, "seq", None) or self.seq  # plugin_conf's __seq__, without building the conf
        return info.id if info.seq == seq and info.conf.get("__plugin_id") == plugin.id else None

    async def _start_instance(self, plugin: Plugin, info: _Instance, conf: dict, old_id: int | None) -> int:
        rpc = self.rpc(plugin.name)
        try:
            status = await rpc.call("plugin.StartInstance", {"Name": plugin.name, "Config": config_json(conf)})
        except RPCError as exc:
            # Kong: kong.log.err("starting instance: ", err); remove the claim; error(err) → a Lua error
            log.error("[%s] starting instance: %s", plugin.name, exc)
            self._instances.pop(plugin.id, None)
            raise LuaError(str(exc)) from None
        info.id = status["Id"]
        info.plugin_name = plugin.name
        info.conf = conf
        info.seq = conf["__seq__"]
        if old_id is not None:
            try:
                await rpc.call("plugin.CloseInstance", old_id)
            except RPCError:
                pass  # Kong: "don't care if there's an error, maybe other thread closed it first"
        return info.id

    def reset_instances(self, plugin_name: str) -> None:
        """``reset_instance`` (plugin.lua:210-224): forget the plugin's instances here now, and post the worker event
        that makes every worker -- this one too -- forget them when it is delivered (init.lua:62-64): later, after
        this request's next await. Until then another worker keeps ids that the restarted server may have given to
        other instances (another route's config)."""
        self._reset_local(plugin_name)
        loop = asyncio.get_running_loop()
        for worker in self.peers:
            loop.call_later(self.event_delay, worker._reset_local, plugin_name)

    def _reset_local(self, plugin_name: str) -> None:
        for key in [k for k, i in self._instances.items() if i.plugin_name == plugin_name]:
            del self._instances[key]

    def _notification(self, rpc: RpcClient, label: str, args: Any) -> None:
        """``rpc_notifications``: a changed ``serverPid`` drops every instance started over that Rpc."""
        if label != "serverPid":
            return
        pid = to_lua(args)
        old = getattr(rpc, "server_pid", None)
        if old is not None and pid != old:
            for name, r in self._rpcs.items():
                if r is rpc:
                    self._reset_local(name)
        rpc.server_pid = pid  # type: ignore[attr-defined]

    def instance_ids(self) -> dict[str, int | None]:
        """plugin id → instance id in this worker (for tests and diagnostics)."""
        return {k: i.id for k, i in self._instances.items()}
