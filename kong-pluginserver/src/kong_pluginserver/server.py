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
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import re
import secrets
import signal
import socket
import sys
import time
import traceback
from typing import Any

import gevent
import gevent.event
import msgpack
from gevent import monkey
from greenlet import getcurrent, greenlet

from kong_pluginserver.pdk import TERMINAL_METHODS, Node, PDKException, sanitize_log_args

log = logging.getLogger("kong_pluginserver")

MSG_RET = "ret"
PHASES = ("certificate", "rewrite", "log", "access", "preread", "response")  # kong_pdk/module.py order
STEP_ALIASES = ("step", "step_service", "step_consumer", "step_route", "step_plugin", "step_credential",
                "step_memory_stats", "step_multi_map")  # fmt: skip
BYTES = "surrogateescape"  # how non-UTF-8 bytes in msgpack str values reach the plugin (and go back to Kong)
ID_SPACE = 1 << 31  # ids stay positive 31-bit integers (Lua numbers, msgpack ints)
KONG_STEP_WAIT_S = 65.0  # Kong answers a PDK call at once; after its own 60 s socket timeouts it never will
DEFAULT_BUDGET_MS = 1000
UNPACK_READ_SIZE = 16 * 1024  # a connection's unpacker starts this small (kong-pdk: 1 MiB) and grows on demand
UNPACK_MAX = 64 * 1024 * 1024  # one message (a raw body) may not exceed this
_CAMEL = re.compile("([a-z])([A-Z])")
_RECV = 65536

# what an event's greenlet hands the hub
_CALL, _END, _RAISED = "call", "end", "raised"


class ServerError(Exception):
    """An RPC error answered as ``[1, msgid, str(exc), None]``."""


class EventAbandoned(BaseException):
    """Raised inside plugin code whose event the server gave up on (budget spent, Kong gone): unwind and return."""


class Deferred:
    """A reply sent later (the plugin code waits for I/O, or builds an instance)."""


DEFERRED = Deferred()


def random_id() -> int:
    return secrets.randbelow(ID_SPACE)


class PluginModule:
    """The one plugin of a dedicated server (kong-pdk's `Module` built from `start_dedicated_server` arguments)."""

    def __init__(self, name: str, cls: type, version: str | None, priority: int, schema: Any) -> None:
        self.name = name
        self.cls = cls
        self.version = version
        self.priority = priority
        self.schema = schema if schema is not None else []
        self.phases = [p for p in PHASES if hasattr(cls, p)]
        self.load_time = time.time()
        try:
            self.mtime = os.stat(sys.path[0] or ".").st_mtime  # kong-pdk: mtime of FILEPATH (= sys.path[0])
        except OSError:
            self.mtime = 0.0
        self.last_start_instance_time = 0.0
        self.last_close_instance_time = 0.0

    def info(self) -> dict[str, Any]:
        return {
            "Name": self.name,
            "Phases": self.phases,
            "Priority": self.priority,
            "Version": self.version,
            "Schema": {"name": self.name, "fields": [{"config": {"type": "record", "fields": self.schema}}]},
        }


class Instance:
    __slots__ = ("config", "name", "obj", "start_time")

    def __init__(self, name: str, obj: Any, config: Any) -> None:
        self.name = name
        self.obj = obj
        self.config = config
        self.start_time = time.time()


class Event:
    """One phase of one request. ``waiting`` is the RPC (conn, msgid) that the plugin's next output answers; None
    while the plugin waits for Kong's Step."""

    __slots__ = ("abandoned", "deadline", "done", "glet", "id", "in_advance", "parked_at", "phase", "request_id",
                 "waiting")  # fmt: skip

    def __init__(self, eid: int, phase: str, glet: greenlet) -> None:
        self.id = eid
        self.phase = phase
        self.glet = glet
        self.done = False  # a terminal call went out: nothing more goes to Kong for this event
        self.abandoned = False
        self.in_advance = False  # running inside the hub's _advance (its output is the return of that switch)
        self.waiting: tuple[_Conn, Any] | None = None
        self.deadline = 0.0  # the budget of the RPC in ``waiting``
        self.parked_at = 0.0  # when its last PDK call went to Kong
        self.request_id: str | None = None


class PluginServer:
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

    # -- events (hub side) ------------------------------------------------------------------------------------

    def start_instance(self, cfg: dict, conn: _Conn, msgid: Any) -> Deferred:
        name = cfg["Name"]
        if name not in self.plugins:
            raise ServerError(f"{name} not initizlied")
        config = json.loads(cfg["Config"])
        iid = self.instance_id
        self.instance_id = (iid + 1) % ID_SPACE
        # Plugin(config) may do I/O: its own greenlet (the hub itself must never block)
        greenlet(self._construct, parent=self.hub).switch(name, iid, config, conn, msgid)
        return DEFERRED

    def _construct(self, name: str, iid: int, config: Any, conn: _Conn, msgid: Any) -> None:
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

    def handle_event(self, event: dict, conn: _Conn, msgid: Any) -> Any:
        iid = event["InstanceId"]
        ins = self.instances.get(iid)
        if ins is None:
            raise ServerError(f"no plugin instance #{iid}")
        phase = event["EventName"]
        handler = getattr(ins.obj, phase)
        eid = self.event_id
        self.event_id = (eid + 1) % ID_SPACE
        ev = Event(eid, phase, greenlet(self._run_event, parent=self.hub))
        self.events[eid] = ev
        return self._advance(ev, (ev, handler), conn, msgid)

    def step(self, data: dict, conn: _Conn, msgid: Any) -> Any:
        return self._resume(data, (data.get("Data"), None), conn, msgid)

    def step_error(self, data: dict, conn: _Conn, msgid: Any) -> Any:
        return self._resume(data, (None, data.get("Data")), conn, msgid)

    def _resume(self, data: dict, value: tuple, conn: _Conn, msgid: Any) -> Any:
        eid = data["EventId"]
        ev = self.events.get(eid)
        if ev is None or ev.waiting is not None:  # unknown, or a Step while the plugin still runs (Kong never does)
            raise ServerError(f"event id {eid} not found")
        if ev.request_id is None and type(value[0]) is dict:
            self._sniff_request_id(ev, value[0])
        return self._advance(ev, value, conn, msgid)

    def _sniff_request_id(self, ev: Event, data: dict) -> None:
        """Remember the request id when the plugin read the headers (JSON log lines carry it)."""
        rid = data.get(self.request_id_header)
        if isinstance(rid, list) and rid:
            rid = rid[0]
        if isinstance(rid, str):
            ev.request_id = rid[:200]

    def _advance(self, ev: Event, value: Any, conn: _Conn, msgid: Any) -> Any:
        """Run the event until its next output (the answer to this RPC), or until it waits for I/O (answered later
        by the event itself, `_emit`)."""
        ev.waiting = (conn, msgid)
        conn.pending = ev
        ev.deadline = time.monotonic() + self.budget
        ev.in_advance = True
        try:
            out = ev.glet.switch(value)
        finally:
            ev.in_advance = False
        if type(out) is not tuple or len(out) != 2 or out[0] not in _KINDS:
            self.waiting_io.add(ev)  # it switched to the hub for I/O (gevent passes no output): answered later
            return DEFERRED
        return self._settle(ev, out)[1]

    def _settle(self, ev: Event, out: tuple) -> tuple[_Conn, tuple]:
        """An event's output: the reply for its pending RPC and its bookkeeping."""
        kind, payload = out
        conn, msgid = ev.waiting
        ev.waiting = None
        self.waiting_io.discard(ev)
        if conn.pending is ev:
            conn.pending = None
        if kind == _CALL:
            if ev.done:
                self.events.pop(ev.id, None)
            else:
                ev.parked_at = time.monotonic()
            return conn, (msgid, None, {"Data": payload, "EventId": ev.id})
        self.events.pop(ev.id, None)
        if kind == _END:
            return conn, (msgid, None, {"Data": MSG_RET, "EventId": ev.id})
        return conn, (msgid, payload, None)  # _RAISED

    def finish_terminated(self) -> None:
        """Let events that exited run their remaining code (kong-pdk's exit returns at once, the code goes on)."""
        while self.resume:
            self.resume.pop().glet.switch(None)  # returns at its end, or when it waits for I/O

    def abandon(self, ev: Event, why: str) -> tuple[_Conn, Any] | None:
        """Give up on an event: free it now and unwind its greenlet with `EventAbandoned`."""
        if ev.abandoned:
            return None
        ev.abandoned = True
        self.abandoned_count += 1
        self.events.pop(ev.id, None)
        self.waiting_io.discard(ev)
        waiting, ev.waiting = ev.waiting, None
        if waiting is not None and waiting[0].pending is ev:
            waiting[0].pending = None
        log.warning("event #%d (%s) abandoned: %s", ev.id, ev.phase, why, extra={"request_id": ev.request_id})
        if ev.glet and not ev.glet.dead and ev.glet is not getcurrent():
            ev.glet.throw(EventAbandoned(ev.id))  # parked on a Step or waiting for I/O: unwinds now
        return waiting

    def tick(self, now: float) -> list[tuple[_Conn, Any, str]]:
        """Budgets (every 10 ms): RPCs whose plugin code has not answered in time get an error answer."""
        out = []
        for ev in [e for e in self.waiting_io if now > e.deadline]:
            err = f"event #{ev.id} ({ev.phase}) of {self.module.name}: no answer within {self.budget * 1000:.0f} ms"
            waiting = self.abandon(ev, "budget spent")
            if waiting is not None:
                out.append((waiting[0], waiting[1], err))
        return out

    def sweep(self, now: float) -> None:
        """Abandon events parked on a Step Kong will never send (a Lua error in the PDK function, Kong gone)."""
        for ev in [e for e in self.events.values() if e.waiting is None and now - e.parked_at > self.step_wait]:
            self.abandon(ev, f"Kong sent no Step for {self.step_wait:.0f} s")

    # -- events (their own greenlets) -------------------------------------------------------------------------

    def _run_event(self, start: tuple) -> Any:
        ev, handler = start
        self.current[ev.glet] = ev
        try:
            handler(self.kong)
            out = (_END, None)
        except EventAbandoned:
            return None
        except BaseException as exc:  # noqa: BLE001 - the plugin raised: kong-pdk would never answer (Kong waits 60 s)
            if ev.done:
                log.error("event #%d (%s): exception after exit\n%s", ev.id, ev.phase, traceback.format_exc(),
                          extra={"request_id": ev.request_id})  # fmt: skip
                return None
            log.error("event #%d (%s): unhandled exception\n%s", ev.id, ev.phase, traceback.format_exc(),
                      extra={"request_id": ev.request_id})  # fmt: skip
            out = (_RAISED, f"unhandled exception in {ev.phase}: {type(exc).__name__}: {exc}")
        finally:
            self.current.pop(ev.glet, None)
        if ev.done or ev.abandoned:
            return None
        if ev.in_advance:
            return out  # back in _advance (the hub is our parent)
        self.answer(*self._settle(ev, out))
        return None

    def _pdk_call(self, method: str, args: tuple) -> Any:
        """In an event's greenlet: hand ``{"Method", "Args"}`` to Kong and wait for its answer (the next Step)."""
        if method.startswith("kong.log.") or method == "kong.log":
            args = sanitize_log_args(args)
        ev = self.current.get(getcurrent())
        if ev is None or ev.done:  # after exit (or outside an event): no answer will ever come
            return (None, None) if self.lua_style and method not in TERMINAL_METHODS else None
        if ev.abandoned:
            raise EventAbandoned(ev.id)
        out = (_CALL, {"Method": method, "Args": list(args)})
        if method in TERMINAL_METHODS:
            ev.done = True
            if ev.in_advance:
                self.resume.append(ev)
                _switch(self.hub, out)  # _advance answers; finish_terminated resumes us
            else:
                self.answer(*self._settle(ev, out))
            return None
        if ev.in_advance:
            data, err = _switch(self.hub, out)
        else:  # resumed by gevent after I/O: answer the pending RPC ourselves, then park until the Step
            self.answer(*self._settle(ev, out))
            data, err = _switch(self.hub)
        if self.lua_style:
            return data, err
        if err:
            raise PDKException(f"exception from {method}: {err}")
        return data


_KINDS = frozenset((_CALL, _END, _RAISED))


def _switch(target: greenlet, *value: Any) -> Any:
    """A plain greenlet switch (gevent's Hub.switch takes no value)."""
    return greenlet.switch(target, *value)


# -- the hub's I/O --------------------------------------------------------------------------------------------


class _Conn:
    __slots__ = ("closed", "fd", "out", "pending", "reader", "sock", "unpacker", "writer")

    def __init__(self, sock: Any, loop: Any) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.unpacker = msgpack.Unpacker(
            raw=False,
            unicode_errors=BYTES,
            strict_map_key=False,
            read_size=UNPACK_READ_SIZE,
            max_buffer_size=UNPACK_MAX,
        )
        self.out = b""
        self.pending: Event | None = None  # the event whose output answers this connection's in-flight request
        self.closed = False
        self.reader = loop.io(self.fd, 1)
        self.writer: Any = None


class UnixServer:
    """Listen on ``path`` and serve `PluginServer` RPCs from gevent's hub (callbacks on the hub greenlet; plugin
    code in event greenlets)."""

    def __init__(self, ps: PluginServer, path: str, listen_queue_size: int = 4096, drain_s: float = 10.0) -> None:
        self.ps = ps
        ps.answer = self.answer
        self.path = path
        self.listen_queue_size = listen_queue_size
        self.drain_s = drain_s
        self.conns: dict[int, _Conn] = {}
        self._packer = msgpack.Packer(unicode_errors=BYTES)  # kong-pdk: msgpack.packb defaults (use_bin_type=True)
        self._stop = False
        self._stopping_since: float | None = None
        self._buf = bytearray(_RECV)
        self._view = memoryview(self._buf)
        self._done = None
        self._parent = os.getppid()
        self._next_check = 0.0

    def listen(self) -> Any:
        if os.path.exists(self.path):
            os.remove(self.path)
        lsock = _socket_class()(socket.AF_UNIX, socket.SOCK_STREAM)
        lsock.bind(self.path)
        lsock.listen(self.listen_queue_size)
        lsock.setblocking(False)
        return lsock

    def serve_forever(self, lsock: Any = None) -> None:
        lsock = lsock or self.listen()
        hub = gevent.get_hub()
        self.ps.hub = hub
        loop = hub.loop
        self._done = gevent.event.Event()
        accept = loop.io(lsock.fileno(), 1)
        accept.start(self._guard, self._accept, lsock)
        ticker = loop.timer(_TICK_S, _TICK_S)
        ticker.start(self._guard, self._tick)
        self._next_check = time.monotonic() + _WATCHDOG_S
        try:
            self._done.wait()
        finally:
            accept.close()
            ticker.close()
            for conn in list(self.conns.values()):
                self._close(conn)
            lsock.close()
            with contextlib.suppress(OSError):
                os.remove(self.path)

    def stop(self) -> None:
        """Graceful stop (SIGTERM): keep serving until no event is in flight, at most ``drain_s``."""
        if not self._stop:
            self._stop = True
            self._stopping_since = time.monotonic()
            log.info("stop requested: draining %d in-flight event(s)", len(self.ps.events))

    def _guard(self, fn: Any, *args: Any) -> None:
        """Hub callbacks must never raise (the hub would report and carry on, but state would be half-done)."""
        try:
            fn(*args)
        except Exception:  # noqa: BLE001 - log and keep serving
            log.error("server loop: %s", traceback.format_exc())

    def _tick(self) -> None:
        ps = self.ps
        now = time.monotonic()
        if ps.waiting_io:
            for conn, msgid, err in ps.tick(now):
                self.answer(conn, (msgid, err, None))
        if now >= self._next_check:
            self._next_check = now + _WATCHDOG_S
            ps.sweep(now)
            if os.getppid() != self._parent:  # Kong (our parent) died: we were re-parented
                log.info("Kong exits, terminating...")
                self._done.set()
        if self._stop:
            if not ps.events:
                log.info("stopped: every in-flight event has ended")
                self._done.set()
            elif now - self._stopping_since >= self.drain_s:
                log.warning("stopping with %d event(s) still in flight after %.0f s", len(ps.events), self.drain_s)
                self._done.set()

    def _accept(self, lsock: Any) -> None:
        loop = self.ps.hub.loop
        while True:
            try:
                sock, _ = lsock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # EMFILE etc.: try again on the next wake-up
                log.warning("accept: %s", exc)
                return
            sock.setblocking(False)
            conn = _Conn(sock, loop)
            self.conns[conn.fd] = conn
            conn.reader.start(self._guard, self._read, conn)

    def _close(self, conn: _Conn) -> None:
        if conn.closed:
            return
        conn.closed = True
        self.conns.pop(conn.fd, None)
        conn.reader.close()
        if conn.writer is not None:
            conn.writer.close()
        conn.sock.close()
        conn.unpacker = None
        if conn.pending is not None:  # Kong closed the socket mid-event: nobody will read the answer
            self.ps.abandon(conn.pending, "Kong closed the connection")

    def _read(self, conn: _Conn) -> None:
        try:
            n = conn.sock.recv_into(self._buf)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            n = 0
        if not n:
            self._close(conn)
            return
        conn.unpacker.feed(self._view[:n])
        ps = self.ps
        try:
            for msg in conn.unpacker:
                if type(msg) is not list or len(msg) != 4:
                    raise ValueError("not a request")  # kong-pdk: the unpacking raises, the connection dies
                _, msgid, method, args = msg
                fn = ps.method(method)
                if fn is None:
                    raise ValueError(f"bad method {method!r}")
                if conn.pending is not None:
                    # A new request while one is unanswered: Kong timed out on this connection and reused it
                    # (mp_rpc.lua setkeepalive() after "no data"). The old answer must never arrive late.
                    ps.abandon(conn.pending, "Kong sent a new request on the connection")
                ps.rpc_count += 1
                self._call(conn, fn, msgid, args)
                if conn.closed:
                    break
        except (ValueError, msgpack.UnpackException) as exc:
            log.warning("connection dropped: %s", exc)
            self._close(conn)
        if ps.resume:
            ps.finish_terminated()

    def _call(self, conn: _Conn, fn: Any, msgid: Any, args: Any) -> None:
        if isinstance(fn, ServerError):
            self.answer(conn, (msgid, str(fn), None))
            return
        try:
            if fn.__name__ in _DEFERRABLE:
                ret = fn(*args, conn, msgid)
                if ret is DEFERRED:
                    return
                self.answer(conn, ret)
                return
            ret = fn(*args)
        except (ServerError, PDKException) as exc:
            log.warning("rpc: #%s error: %s", msgid, exc)
            self.answer(conn, (msgid, str(exc), None))
            return
        except Exception as exc:  # noqa: BLE001 - kong-pdk answers str(exc) for anything else too
            log.error("rpc: #%s exception: %s", msgid, traceback.format_exc())
            self.answer(conn, (msgid, str(exc), None))
            return
        self.answer(conn, (msgid, None, ret))

    def answer(self, conn: _Conn, reply: tuple) -> None:
        if conn.closed:
            return
        msgid, err, ret = reply
        try:
            payload = self._packer.pack([1, msgid, err, ret])
        except Exception as exc:  # noqa: BLE001 - a value msgpack cannot carry: an error answer, never a dead loop
            log.error("rpc: #%s: reply not packable: %s", msgid, exc)
            payload = self._packer.pack([1, msgid, f"reply not packable: {type(exc).__name__}", None])
        if conn.out:
            conn.out += payload
            return
        try:
            sent = conn.sock.send(payload)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError as exc:
            if exc.errno not in (errno.EPIPE, errno.ECONNRESET):
                log.warning("send: %s", exc)
            self._close(conn)
            return
        if sent < len(payload):
            conn.out = payload[sent:]
            if conn.writer is None:
                conn.writer = self.ps.hub.loop.io(conn.fd, 2)
            conn.writer.start(self._guard, self._flush, conn)

    def _flush(self, conn: _Conn) -> None:
        try:
            sent = conn.sock.send(conn.out)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(conn)
            return
        conn.out = conn.out[sent:]
        if not conn.out:
            conn.writer.stop()


_DEFERRABLE = frozenset(("start_instance", "handle_event", "step", "step_error"))
_TICK_S = 0.05
_WATCHDOG_S = 1.0


def _socket_class() -> type:
    """The unpatched socket class: the hub's own I/O is non-blocking and driven by its watchers."""
    return monkey.get_original("socket", "socket")


def install_sigterm(server: UnixServer) -> None:
    """SIGTERM (Kong stopping, the emulator, Kubernetes) drains; a second SIGTERM stops at once."""

    def on_term(signum: int, _frame: Any) -> None:
        if server._stop:
            os._exit(0)
        server.stop()

    signal.signal(signal.SIGTERM, on_term)
