"""A MessagePack-RPC plugin server that speaks kong-pdk's protocol and runs kong-pdk plugin classes unchanged.

Wire and RPC semantics are kong-pdk 0.36's (`kong_pdk/listener.py`, `kong_pdk/server.py`; docs/architecture.md,
"Plugin runtime"): requests ``[0, msgid, "plugin.<Method>", [params]]``, replies ``[1, msgid, err, result]`` on the
same connection; StartInstance / CloseInstance / HandleEvent / Step (+ every Step* alias, StepError) / GetStatus /
GetPluginInfo / SetPluginDir / InstanceStatus with kong-pdk's result shapes and error texts ("no plugin instance #N",
"event id N not found", "<name> not initizlied", "RPC for <ns> is not supported", "'PluginServer' object has no
attribute '<x>'"); a terminal ``kong.response.exit`` / ``error`` ends the event (a later Step is "event id N not
found").

How it runs (gevent, https://www.gevent.org/, for cooperative I/O):

* the server's sockets are driven by gevent's hub (libev watchers; callbacks on the hub greenlet), which owns
  every table and the MessagePack packer/unpackers;
* each event runs in a greenlet: a PDK call switches to the hub with ``{"Method", "Args"}``, the hub answers the
  pending RPC with it, and the next Step switches the result back in. No thread per event, no queue, no lock;
* the plugin server process is monkey-patched by gevent before the plugin modules load (`kong_pluginserver.boot`,
  imported first by every entry file): socket, ssl, select, time.sleep, DNS and threading become cooperative, so a
  Redis call, a JWKS fetch or an HTTP call parks only its own event while the hub serves the others. An event that
  was parked on I/O answers its pending RPC itself when it gets to its next PDK call or its end;
* every RPC that waits for plugin code has a budget (``--budget-ms``, default 1000): when it runs out the hub
  answers ``[1, msgid, "... no answer within N ms", nil]`` at once (Kong logs it, kong.yml's fail-closed guard
  denies) and abandons the event, so Kong's 60 s read timeout is never reached and a connection never carries a late
  reply. CPU-bound plugin code cannot be pre-empted: it holds the hub for as long as it computes;
* an event waiting for Kong's next Step is abandoned after ``KONG_STEP_WAIT_S`` (Kong never sends it after a Lua
  error in a PDK function). An abandoned event's greenlet gets `EventAbandoned` thrown in (a BaseException, so a
  plugin's ``except Exception`` does not swallow it): no greenlet, event or buffer outlives its event, whatever the
  plugin did (kong-pluginserver/README.md lists the kong-pdk leaks this removes).

Bytes: Kong packs every Lua string as msgpack ``str`` without any UTF-8 check (`mp_rpc.lua` uses lua-MessagePack's
string packer, `kong/runloop/plugin_servers/rpc/mp_rpc.lua:1-26`). Here every such value (header names and values,
query, path, ``kong.log.serialize()``) is decoded with ``surrogateescape``: valid UTF-8 arrives as the usual
``str``, any other byte b as the lone surrogate U+DC00+b, and strings the plugin sends back are encoded the same way,
so the original bytes go back to Kong unchanged. Raw bodies stay ``bytes`` (Kong sends them as msgpack ``bin``).

Deliberate differences from kong-pdk (each one removes a hang or a leak, never changes a happy-path answer):

* a plugin that raises gets an error reply at once (``unhandled exception in <phase>: <Type>: <text>``);
* PDK calls after a terminal exit return at once (nothing is ever sent for them), and the event is always freed;
* instance and event ids start at a random 31-bit offset, so ids cached by Kong's workers before a restart get
  "no plugin instance" (Kong then re-creates the instance with the right config) instead of another route's instance;
* the watchdog exits when the parent process changes (kong-pdk: only when it becomes pid 1);
* SIGTERM drains: in-flight events are served until they end (at most ``--drain-s``), then the server exits 0.

Modules: this one (`PluginServer`: RPC dispatch, instances), ``events`` (the events: hub side and greenlet side),
``transport`` (`UnixServer`: the socket, MessagePack framing, serve / tick / drain, SIGTERM), ``model`` (the plugin
module, instances, events, error types).
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
import traceback
from typing import TYPE_CHECKING, Any

from greenlet import greenlet

from kong_pluginserver.events import EventsMixin
from kong_pluginserver.model import DEFERRED, ID_SPACE, Deferred, Instance, PluginModule, ServerError, random_id
from kong_pluginserver.pdk import Node

if TYPE_CHECKING:
    from kong_pluginserver.model import Event
    from kong_pluginserver.transport import Conn

log = logging.getLogger("kong_pluginserver")

STEP_ALIASES = ("step", "step_service", "step_consumer", "step_route", "step_plugin", "step_credential",
                "step_memory_stats", "step_multi_map")  # fmt: skip
KONG_STEP_WAIT_S = 65.0  # Kong answers a PDK call at once; after its own 60 s socket timeouts it never will
DEFAULT_BUDGET_MS = 1000
_CAMEL = re.compile("([a-z])([A-Z])")


class PluginServer(EventsMixin):
    """RPC methods (kong-pdk names, snake_case) over one plugin, called on the hub; events run in greenlets."""

    def __init__(
        self,
        module: PluginModule,
        lua_style: bool = True,
        budget_ms: int = DEFAULT_BUDGET_MS,
        request_id_header: str = "x-request-id",
        step_wait_s: float = KONG_STEP_WAIT_S,
    ) -> None:
        self.module = module
        self.plugins = {module.name: module}
        self.lua_style = lua_style
        self.budget = budget_ms / 1000.0
        self.step_wait = step_wait_s
        self.request_id_header = request_id_header.lower()
        self.plugin_dir: str | None = None
        self.instances: dict[int, Instance] = {}
        self.instance_id = random_id()
        self.events: dict[int, Event] = {}
        self.event_id = random_id()
        self.kong = Node("kong", self._pdk_call)
        self.hub: Any = None  # gevent's hub, set when serving
        self.answer: Any = None  # UnixServer.answer(conn, (msgid, err, result))
        self.waiting_io: set[Event] = set()  # events parked on I/O with an RPC to answer (their budgets run)
        self.resume: list[Event] = []  # events that made a terminal call: run their remaining code after the reply
        self.current: dict[greenlet, Event] = {}
        self.rpc_count = 0  # RPCs answered (HandleEvent + Step* count the PDK round trips); GetStatus reports it
        self.abandoned_count = 0
        self._methods: dict[str, Any] = {}

    # -- dispatch ---------------------------------------------------------------------------------------------

    def method(self, method: Any) -> Any:
        """The bound function for ``plugin.CamelCase`` (cached), or an error / None (drop the connection)."""
        fn = self._methods.get(method)
        if fn is None:
            fn = self._resolve(method)
            if isinstance(method, str) and len(self._methods) < 64:
                self._methods[method] = fn
        return fn

    def _resolve(self, method: Any) -> Any:
        if not isinstance(method, str) or method.count(".") != 1:
            return None  # kong-pdk: `ns, cmd = method.split(".")` raises outside its try: the connection dies
        ns, cmd = method.split(".")
        if ns != "plugin":
            return ServerError(f"RPC for {ns} is not supported")
        if not cmd:
            return None
        name = cmd[0].lower() + _CAMEL.sub(lambda m: f"{m.group(1)}_{m.group(2).lower()}", cmd[1:])
        if name in STEP_ALIASES:
            return self.step
        fn = {
            "start_instance": self.start_instance,
            "close_instance": self.close_instance,
            "handle_event": self.handle_event,
            "step_error": self.step_error,
            "get_status": self.get_status,
            "get_plugin_info": self.get_plugin_info,
            "instance_status": self.instance_status,
            "set_plugin_dir": self.set_plugin_dir,
        }.get(name)
        return fn or ServerError(f"'PluginServer' object has no attribute '{name}'")

    # -- instances --------------------------------------------------------------------------------------------

    def instance_status(self, iid: Any) -> dict:
        ins = self.instances.get(iid)
        if ins is None:
            raise ServerError(f"no plugin instance #{iid}")
        return {"Name": ins.name, "Id": iid, "Config": ins.config, "StartTime": ins.start_time}

    def close_instance(self, iid: Any) -> dict:
        ins = self.instances.pop(iid, None)
        if ins is None:
            raise ServerError(f"no plugin instance #{iid}")
        self.plugins[ins.name].last_close_instance_time = time.time()
        return {"Name": ins.name, "Id": iid, "Config": ins.config}

    def get_status(self, *_: Any) -> dict:
        plugins = {}
        for name, p in self.plugins.items():
            plugins[name] = {
                "Name": name,
                "Modtime": p.mtime,
                "LoadTime": p.load_time,
                "Instances": [self.instance_status(i) for i, ins in self.instances.items() if ins.name == name],
                "LastStartInstance": p.last_start_instance_time,
                "LastCloseInstance": p.last_close_instance_time,
            }
        return {
            "Pid": os.getpid(),
            "Plugins": plugins,
            "Events": len(self.events),
            "Rpcs": self.rpc_count,
            "Abandoned": self.abandoned_count,
        }

    def get_plugin_info(self, name: str) -> dict:
        if name not in self.plugins:
            raise ServerError(f"{name} not initizlied")
        return self.plugins[name].info()

    def set_plugin_dir(self, path: str) -> str:
        if not os.path.exists(path):
            raise ServerError(f"{path} not exists")
        self.plugin_dir = path
        return "ok"

    def start_instance(self, cfg: dict, conn: Conn, msgid: Any) -> Deferred:
        name = cfg["Name"]
        if name not in self.plugins:
            raise ServerError(f"{name} not initizlied")
        config = json.loads(cfg["Config"])
        iid = self.instance_id
        self.instance_id = (iid + 1) % ID_SPACE
        # Plugin(config) may do I/O: its own greenlet (the hub itself must never block)
        greenlet(self._construct, parent=self.hub).switch(name, iid, config, conn, msgid)
        return DEFERRED

    def _construct(self, name: str, iid: int, config: Any, conn: Conn, msgid: Any) -> None:
        try:
            obj = self.plugins[name].cls(config)
        except Exception as exc:  # noqa: BLE001 - kong-pdk answers str(exc); Kong then fails the request with 500
            log.error("instance of %s failed to start: %s", name, traceback.format_exc(limit=5))
            self.answer(conn, (msgid, str(exc), None))
            return
        ins = Instance(name, obj, config)
        self.instances[iid] = ins
        self.plugins[name].last_start_instance_time = time.time()
        log.info("instance #%d of %s started", iid, name)
        self.answer(conn, (msgid, None, {"Name": name, "Id": iid, "Config": config, "StartTime": ins.start_time}))
