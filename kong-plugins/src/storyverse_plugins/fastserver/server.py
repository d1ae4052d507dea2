"""A single-threaded MessagePack-RPC plugin server that speaks kong-pdk's protocol and runs kong-pdk plugin classes.

Wire and RPC semantics are kong-pdk 0.36's (`kong_pdk/listener.py`, `kong_pdk/server.py`; docs/kong-plugin-protocol.md
§1.2-§1.7, §1.14): requests ``[0, msgid, "plugin.<Method>", [params]]``, replies ``[1, msgid, err, result]`` on the
same connection; StartInstance / CloseInstance / HandleEvent / Step (+ every Step* alias, StepError) / GetStatus /
GetPluginInfo / SetPluginDir / InstanceStatus with kong-pdk's result shapes and error texts ("no plugin instance #N",
"event id N not found", "<name> not initizlied", "RPC for <ns> is not supported", "'PluginServer' object has no
attribute '<x>'"); a terminal ``kong.response.exit`` / ``error`` ends the event (a later Step is "event id N not
found").

How it runs (what makes it cheaper than kong-pdk's thread per event + queues + process-wide lock):

* one epoll loop on the main thread, non-blocking Unix sockets, one streaming unpacker per connection;
* each event runs in a greenlet: a PDK call switches back to the loop with the call, the loop answers the pending
  RPC with it, and the next Step switches the result back in. No thread per event, no queue, no lock;
* no lock is held across plugin code, so an event that is slow before its first PDK call delays only the loop for
  as long as it actually computes (kong-pdk's ``e_lock`` blocks every other event start until that first call).

Deliberate differences from kong-pdk (each one removes a hang or a leak, never changes a happy-path answer):

* a plugin that raises gets an error reply at once (``unhandled exception in <phase>: <Type>: <text>``); Kong logs
  it and goes on, as it does after kong-pdk's 60 s silence;
* PDK calls after a terminal exit return at once (nothing is ever sent for them), and the event is always freed;
* the watchdog exits when the parent process changes (kong-pdk: only when it becomes pid 1, from a thread whose
  ``sys.exit()`` ends just that thread).

The price of one thread: plugin code that blocks (a Redis call, a JWKS fetch) holds the loop for that time, as in
kong-pdk's ``-g`` mode. Keep blocking work short and bounded (the StoryVerse plugins use 100 ms Redis timeouts and
rate-limited JWKS refetches).
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import re
import select
import socket
import sys
import time
import traceback
from typing import Any

import msgpack
from greenlet import greenlet

from storyverse_plugins.fastserver.pdk import TERMINAL_METHODS, Node, PDKException, sanitize_log_args

log = logging.getLogger("storyverse_plugins.fastserver")

MSG_RET = "ret"
PHASES = ("certificate", "rewrite", "log", "access", "preread", "response")  # kong_pdk/module.py order
STEP_ALIASES = ("step", "step_service", "step_consumer", "step_route", "step_plugin", "step_credential",
                "step_memory_stats", "step_multi_map")  # fmt: skip
_CAMEL = re.compile("([a-z])([A-Z])")
_RECV = 65536
_WATCHDOG_S = 1.0


class ServerError(Exception):
    """An RPC error answered as ``[1, msgid, str(exc), None]``."""


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
    __slots__ = ("done", "glet", "id", "phase")

    def __init__(self, eid: int, glet: greenlet, phase: str) -> None:
        self.id = eid
        self.glet = glet
        self.phase = phase
        self.done = False  # a terminal call was answered: nothing more goes to Kong for this event


class PluginServer:
    """RPC methods (kong-pdk names, snake_case) over one plugin; events run as greenlets of the calling loop."""

    def __init__(self, module: PluginModule, lua_style: bool = True) -> None:
        self.plugins = {module.name: module}
        self.lua_style = lua_style
        self.plugin_dir: str | None = None
        self.instances: dict[int, Instance] = {}
        self.instance_id = 0
        self.events: dict[int, Event] = {}
        self.event_id = 0
        self.current: Event | None = None
        self.resume: list[Event] = []  # events that made a terminal call: run their remaining code after the reply
        self.kong = Node("kong", self._pdk_call)
        self._loop: greenlet | None = None
        self.rpc_count = 0  # RPCs answered (HandleEvent + Step* count the PDK round trips); GetStatus reports it
        self._methods: dict[str, Any] = {}

    # -- dispatch ---------------------------------------------------------------------------------------------

    def method(self, method: Any) -> Any:
        """The bound function for ``plugin.CamelCase`` (cached), or an error text / None (drop the connection)."""
        fn = self._methods.get(method)
        if fn is None:
            fn = self._methods[method] = self._resolve(method)
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

    def start_instance(self, cfg: dict) -> dict:
        name = cfg["Name"]
        plugin = self.plugins.get(name)
        if plugin is None:
            raise ServerError(f"{name} not initizlied")
        config = json.loads(cfg["Config"])
        iid = self.instance_id
        plugin.last_start_instance_time = time.time()
        self.instances[iid] = Instance(name, plugin.cls(config), config)
        self.instance_id = iid + 1
        log.info("instance #%d of %s started", iid, name)
        return {"Name": name, "Id": iid, "Config": config, "StartTime": time.time()}

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
        return {"Pid": os.getpid(), "Plugins": plugins, "Events": len(self.events), "Rpcs": self.rpc_count}

    def get_plugin_info(self, name: str) -> dict:
        if name not in self.plugins:
            raise ServerError(f"{name} not initizlied")
        return self.plugins[name].info()

    def set_plugin_dir(self, path: str) -> str:
        if not os.path.exists(path):
            raise ServerError(f"{path} not exists")
        self.plugin_dir = path
        return "ok"

    # -- events -----------------------------------------------------------------------------------------------

    def handle_event(self, event: dict) -> dict:
        iid = event["InstanceId"]
        ins = self.instances.get(iid)
        if ins is None:
            raise ServerError(f"no plugin instance #{iid}")
        phase = event["EventName"]
        handler = getattr(ins.obj, phase)
        eid = self.event_id
        self.event_id = eid + 1
        ev = Event(eid, greenlet(_run_phase, self._loop), phase)
        self.events[eid] = ev
        return self._advance(ev, (handler, self.kong))

    def step(self, data: dict) -> dict:
        eid = data["EventId"]
        ev = self.events.get(eid)
        if ev is None:
            raise ServerError(f"event id {eid} not found")
        return self._advance(ev, (data.get("Data"), None))

    def step_error(self, data: dict) -> dict:
        eid = data["EventId"]
        ev = self.events.get(eid)
        if ev is None:
            raise ServerError(f"event id {eid} not found")
        return self._advance(ev, (None, data.get("Data")))

    def _advance(self, ev: Event, value: Any) -> dict:
        """Run the event until its next PDK call (the answer to this RPC) or its end."""
        self.current = ev
        try:
            out = ev.glet.switch(value)
        except BaseException as exc:  # noqa: BLE001 - the plugin raised: kong-pdk would never answer (Kong waits 60 s)
            self.events.pop(ev.id, None)
            log.error("event #%d (%s): unhandled exception\n%s", ev.id, ev.phase, traceback.format_exc())
            raise ServerError(f"unhandled exception in {ev.phase}: {type(exc).__name__}: {exc}") from None
        finally:
            self.current = None
        if out is MSG_RET:
            del self.events[ev.id]
        elif ev.done:  # a terminal call: Kong sends nothing more for this event
            del self.events[ev.id]
            self.resume.append(ev)
        return {"Data": out, "EventId": ev.id}

    def finish_terminated(self) -> None:
        """Let events that exited run their remaining code (kong-pdk's exit returns at once, the code goes on)."""
        while self.resume:
            ev = self.resume.pop()
            self.current = ev
            try:
                ev.glet.switch(None)
            except BaseException:  # noqa: BLE001 - nobody to answer any more: log it
                log.error("event #%d (%s): exception after exit\n%s", ev.id, ev.phase, traceback.format_exc())
            finally:
                self.current = None

    def _pdk_call(self, method: str, args: tuple) -> Any:
        """Inside an event's greenlet: hand ``{"Method", "Args"}`` to the loop and wait for Kong's answer."""
        if method.startswith("kong.log.") or method == "kong.log":
            args = sanitize_log_args(args)
        ev = self.current
        if ev is None or ev.done:  # after exit (or outside an event): no answer will ever come
            return (None, None) if self.lua_style and method not in TERMINAL_METHODS else None
        call = {"Method": method, "Args": args}
        if method in TERMINAL_METHODS:
            ev.done = True
            self._loop.switch(call)
            return None
        data, err = self._loop.switch(call)
        if self.lua_style:
            return data, err
        if err:
            raise PDKException(f"exception from {method}: {err}")
        return data


def _run_phase(handler_and_kong: tuple) -> str:
    handler, kong = handler_and_kong
    handler(kong)
    return MSG_RET


# -- the loop ---------------------------------------------------------------------------------------------------


class _Conn:
    __slots__ = ("out", "sock", "unpacker")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.unpacker = msgpack.Unpacker(raw=False, strict_map_key=False)
        self.out = b""


class UnixServer:
    """Listen on ``path`` and serve `PluginServer` RPCs from one epoll loop (the calling thread)."""

    def __init__(self, ps: PluginServer, path: str, listen_queue_size: int = 4096) -> None:
        self.ps = ps
        self.path = path
        self.listen_queue_size = listen_queue_size
        self.conns: dict[int, _Conn] = {}
        self._packer = msgpack.Packer()  # kong-pdk: msgpack.packb defaults (use_bin_type=True)
        self._stop = False

    def serve_forever(self) -> None:
        if os.path.exists(self.path):
            os.remove(self.path)
        lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        lsock.bind(self.path)
        lsock.listen(self.listen_queue_size)
        lsock.setblocking(False)
        log.info("server (fastserver) started at path %s", self.path)
        self.ps._loop = greenlet.getcurrent()
        ep = select.epoll()
        lfd = lsock.fileno()
        ep.register(lfd, select.EPOLLIN)
        parent = os.getppid()
        next_check = time.monotonic() + _WATCHDOG_S
        conns = self.conns
        try:
            while not self._stop:
                for fd, mask in ep.poll(_WATCHDOG_S):
                    if fd == lfd:
                        self._accept(lsock, ep)
                        continue
                    conn = conns.get(fd)
                    if conn is None:
                        continue
                    if mask & select.EPOLLOUT:
                        self._flush(conn, ep, fd)
                    if mask & (select.EPOLLIN | select.EPOLLHUP | select.EPOLLERR):
                        self._read(conn, ep, fd)
                now = time.monotonic()
                if now >= next_check:
                    next_check = now + _WATCHDOG_S
                    if os.getppid() != parent:  # Kong (our parent) died: we were re-parented
                        log.info("Kong exits, terminating...")
                        return
        finally:
            ep.close()
            lsock.close()

    def stop(self) -> None:
        self._stop = True

    def _accept(self, lsock: socket.socket, ep: select.epoll) -> None:
        while True:
            try:
                sock, _ = lsock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # EMFILE etc.: try again on the next wake-up
                log.warning("accept: %s", exc)
                return
            sock.setblocking(False)
            fd = sock.fileno()
            self.conns[fd] = _Conn(sock)
            ep.register(fd, select.EPOLLIN)

    def _close(self, conn: _Conn, ep: select.epoll, fd: int) -> None:
        self.conns.pop(fd, None)
        with contextlib.suppress(OSError, ValueError):
            ep.unregister(fd)
        conn.sock.close()

    def _read(self, conn: _Conn, ep: select.epoll, fd: int) -> None:
        try:
            data = conn.sock.recv(_RECV)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._close(conn, ep, fd)
            return
        unpacker = conn.unpacker
        unpacker.feed(data)
        ps = self.ps
        out = []
        try:
            for msg in unpacker:
                if type(msg) is not list or len(msg) != 4:
                    raise ValueError("not a request")  # kong-pdk: the unpacking raises, the connection dies
                _, msgid, method, args = msg
                fn = ps.method(method)
                if fn is None:
                    raise ValueError(f"bad method {method!r}")
                ps.rpc_count += 1
                out.append(self._reply(fn, msgid, args))
        except (ValueError, msgpack.UnpackException) as exc:
            log.warning("connection dropped: %s", exc)
            if out:
                self._send(conn, ep, fd, b"".join(out))
            self._close(conn, ep, fd)
            ps.finish_terminated()
            return
        self._send(conn, ep, fd, out[0] if len(out) == 1 else b"".join(out))
        if ps.resume:
            ps.finish_terminated()

    def _reply(self, fn: Any, msgid: Any, args: Any) -> bytes:
        pack = self._packer.pack
        if isinstance(fn, ServerError):
            return pack([1, msgid, str(fn), None])
        try:
            ret = fn(*args)
            return pack([1, msgid, None, ret])
        except (ServerError, PDKException) as exc:
            log.warning("rpc: #%s error: %s", msgid, exc)
            return pack([1, msgid, str(exc), None])
        except Exception as exc:  # noqa: BLE001 - kong-pdk answers str(exc) for anything else too
            log.error("rpc: #%s exception: %s", msgid, traceback.format_exc())
            return pack([1, msgid, str(exc), None])

    def _send(self, conn: _Conn, ep: select.epoll, fd: int, payload: bytes) -> None:
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
            self._close(conn, ep, fd)
            return
        if sent < len(payload):
            conn.out = payload[sent:]
            ep.modify(fd, select.EPOLLIN | select.EPOLLOUT)

    def _flush(self, conn: _Conn, ep: select.epoll, fd: int) -> None:
        try:
            sent = conn.sock.send(conn.out)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(conn, ep, fd)
            return
        conn.out = conn.out[sent:]
        if not conn.out:
            ep.modify(fd, select.EPOLLIN)
