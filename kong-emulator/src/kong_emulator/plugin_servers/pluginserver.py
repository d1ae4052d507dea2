"""Plugin-server processes, as Kong 3.9+ handles them (`kong/runloop/plugin_servers/process.lua`).

* `query_plugin_info`: ``io.popen(query_cmd)`` through the shell, read all of stdout, JSON-decode; accept
  ``[info, ...]`` or ``{"Protocol", "Plugins"}``; keep only the FIRST info (3.9+); validate it.
* `PluginServerProcess`: ``ngx.pipe.spawn("exec " .. start_cmd, {merge_stderr = true})``; every output line is
  logged at info as ``[<name>:<pid>] <line>``; a dead server is respawned at most once per second; exit status 127
  stops respawning; `stop` sends SIGTERM. The server is a direct child of the emulator (``exec`` replaces the
  shell), so kong-pdk's watchdog (exit when the parent pid becomes 1) works as under Kong.
* `PluginServers`: all of them, plus ``socket_of(plugin name)`` for the bridge.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import socket
import time
from collections import deque
from typing import Any, Protocol

from kong_emulator.config.entities import PluginInfo

log = logging.getLogger("kong_emulator.pluginserver")

RESPAWN_INTERVAL = 1.0  # process.lua: next_spawn = ngx.now() + 1
COMMAND_NOT_FOUND = 127


class PluginServerError(Exception):
    """A plugin server could not be queried or started (Kong refuses to start)."""


class ServerDef(Protocol):
    """What the emulator needs of a ``pluginserver_<name>_*`` definition (conf.PluginServerConf)."""

    name: str
    socket: str
    start_cmd: str | None
    query_cmd: str | None


async def query_plugin_info(server: ServerDef) -> PluginInfo:
    """Run the query command like Kong's ``query_external_plugin_info`` and validate the first info."""
    raw = await query_raw_info(server)
    from kong_emulator.config.plugin_schema import validate_plugin_info  # the config side owns validation

    return validate_plugin_info(raw)


async def query_raw_info(server: ServerDef) -> dict[str, Any]:
    """The first plugin info object of ``server``'s query command, undecorated (Kong 3.9+ reads only ``[1]``)."""
    if not server.query_cmd:
        raise PluginServerError(f"no info query for {server.name}")
    proc = await asyncio.create_subprocess_shell(server.query_cmd, stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()  # io.popen: stderr is not captured, the exit status is ignored
    text = out.decode("utf-8", "replace")
    try:
        dump = json.loads(text)
    except ValueError as exc:
        raise PluginServerError(f"failed decoding plugin info: {exc}") from None
    if not isinstance(dump, dict | list):
        raise PluginServerError(f"not a plugin info table: \n{server.query_cmd}\n{text}")
    return _first_info(server, dump)


def _first_info(server: ServerDef, dump: dict | list) -> dict[str, Any]:
    """``(dump.Plugins or dump)[1]``, refusing what the emulator cannot speak (ProtoBuf) or Kong cannot index."""
    protocol = dump.get("Protocol") if isinstance(dump, dict) else None
    if (protocol or "MsgPack:1") != "MsgPack:1":
        raise PluginServerError(f"pluginserver {server.name}: protocol {protocol} is not supported (MsgPack:1 only)")
    infos = (dump.get("Plugins") or dump) if isinstance(dump, dict) else dump
    if not isinstance(infos, list) or not infos or not isinstance(infos[0], dict):
        raise PluginServerError(f"pluginserver {server.name}: no plugin info in the query output")
    if len(infos) > 1:
        names = ", ".join(str(i.get("Name")) for i in infos[1:] if isinstance(i, dict))
        log.warning("[pluginserver] %s: Kong 3.9+ loads only the first plugin; ignored: %s", server.name, names)
    return infos[0]


class PluginServerProcess:
    """One supervised plugin server (Kong's ``pluginserver_timer``)."""

    def __init__(self, server: ServerDef, ready_timeout: float = 15.0, keep_lines: int = 500) -> None:
        self.server = server
        self.ready_timeout = ready_timeout
        self.proc: asyncio.subprocess.Process | None = None
        self.lines: deque[str] = deque(maxlen=keep_lines)  # recent "[name:pid] line" output, for diagnostics
        self.spawns = 0
        self.gave_up = False  # exit 127: not respawned
        self._task: asyncio.Task | None = None
        self._stopping = False
        self._spawned = asyncio.Event()

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    async def start(self) -> None:
        """Spawn and supervise the server, and return once its socket accepts connections."""
        if self._task is None:
            self._task = asyncio.create_task(self._supervise(), name=f"pluginserver {self.server.name}")
        await self.wait_ready()

    async def wait_ready(self) -> None:
        """Wait until the socket accepts a connection (Kong itself just retries; tests want a barrier)."""
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if self.gave_up:
                raise PluginServerError(f"pluginserver {self.server.name}: start command not found")
            if await _accepts(self.server.socket):
                return
            await asyncio.sleep(0.02)
        raise PluginServerError(f"pluginserver {self.server.name}: socket {self.server.socket} not ready")

    async def _supervise(self) -> None:
        next_spawn = 0.0
        name = self.server.name
        while not self._stopping:
            delay = next_spawn - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if self._stopping:
                break
            log.info("[pluginserver] starting pluginserver process for %s", name)
            self.proc = await _spawn(self.server.start_cmd or "")
            self.spawns += 1
            next_spawn = time.monotonic() + RESPAWN_INTERVAL
            log.info("[pluginserver] started, pid %s", self.proc.pid)
            await self._grab_logs(self.proc)
            status = await self.proc.wait()
            if status == COMMAND_NOT_FOUND:
                log.error(
                    '[pluginserver] external pluginserver "%s" start command "%s" exited with "command not found"',
                    name,
                    self.server.start_cmd,
                )
                self.gave_up = True
                break
            log.info("external pluginserver '%s' terminated: exit %s", name, status)
        log.info("[pluginserver] exiting: pluginserver '%s' not respawned.", name)

    async def _grab_logs(self, proc: asyncio.subprocess.Process) -> None:
        prefix = f"[{self.server.name}:{proc.pid}] "
        assert proc.stdout is not None
        async for raw in proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            if line:
                self.lines.append(prefix + line)
                log.info("%s%s", prefix, line)

    async def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM the server (``stop_pluginservers``) and stop respawning; SIGKILL after ``timeout``."""
        self._stopping = True
        proc = self.proc
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), timeout)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        if self._task is not None:
            try:  # the supervisor sees the exit and returns (it also drains the output pipe)
                await asyncio.wait_for(asyncio.shield(self._task), timeout)
            except TimeoutError:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
            self._task = None


async def _spawn(cmd: str) -> asyncio.subprocess.Process:
    """``exec <cmd>`` through the shell, stdout+stderr merged: the server replaces the shell, as a child of us."""
    return await asyncio.create_subprocess_shell(
        "exec " + cmd,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )


async def _accepts(path: str) -> bool:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        await asyncio.get_running_loop().sock_connect(sock, path)
    except OSError:
        return False
    finally:
        sock.close()
    return True


class PluginServers:
    """Every configured plugin server: query at start, spawn those with a start command, stop on shutdown."""

    def __init__(self, servers: list[ServerDef], ready_timeout: float = 15.0) -> None:
        self.servers = list(servers)
        self.ready_timeout = ready_timeout
        self.infos: dict[str, PluginInfo] = {}  # plugin name → info
        self.processes: dict[str, PluginServerProcess] = {}  # server name → process
        self._socket_by_plugin: dict[str, str] = {}

    async def query_all(self) -> dict[str, PluginInfo]:
        """Kong's ``load_external_plugins_info``: one plugin per server; a duplicate name is an error."""
        for server in self.servers:
            info = await query_plugin_info(server)
            if info.name in self.infos:
                raise PluginServerError(f"duplicate plugin name [{info.name}] by pluginserver {server.name}")
            self.infos[info.name] = info
            self._socket_by_plugin[info.name] = server.socket
        return self.infos

    async def start_all(self) -> None:
        """Spawn every server that has a start command and wait for all sockets."""
        for server in self.servers:
            if not server.start_cmd:
                log.warning("[pluginserver] %s has no start command: managed externally", server.name)
                continue
            self.processes[server.name] = PluginServerProcess(server, self.ready_timeout)
        await asyncio.gather(*(p.start() for p in self.processes.values()))

    async def stop_all(self) -> None:
        """SIGTERM every managed server."""
        await asyncio.gather(*(p.stop() for p in self.processes.values()))

    def socket_of(self, plugin_name: str) -> str:
        """The socket of the server that serves ``plugin_name``."""
        return self._socket_by_plugin[plugin_name]

    def sockets(self) -> dict[str, str]:
        """plugin name → socket path (what `PluginRunner` takes)."""
        return dict(self._socket_by_plugin)
