"""Shared helpers for the emulator's protocol tests: real kong-pdk servers as children, contexts, plugins."""

from __future__ import annotations

import ast
import asyncio
import atexit
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass

import msgpack
from kong_emulator.config.entities import Plugin
from kong_emulator.runloop.context import ClientRequest, Headers, RequestContext

PLUGINS_DIR = os.path.join(os.path.dirname(__file__), "plugins")
SCRIPT = os.path.join(PLUGINS_DIR, "t_script.py")
PYTHON = sys.executable


_CREATED: list[str] = []


def short_tmpdir() -> str:
    """A short directory under /tmp (Unix socket paths must stay under ~100 characters), removed at exit."""
    path = tempfile.mkdtemp(prefix="emu", dir="/tmp")
    _CREATED.append(path)
    return path


@atexit.register
def _cleanup() -> None:
    for path in _CREATED:
        shutil.rmtree(path, ignore_errors=True)


@dataclass
class Server:
    """A real kong-pdk dedicated server (t-script) started with Popen as our child."""

    prefix: str
    socket: str
    proc: subprocess.Popen | None = None
    args: tuple[str, ...] = ()

    @property
    def start_cmd(self) -> str:
        extra = " ".join(self.args)
        return f"{PYTHON} {SCRIPT} -p {self.prefix} --socket-name t-script.sock {extra}".strip()

    def start(self) -> Server:
        if os.path.exists(self.socket):
            os.unlink(self.socket)
        self.proc = subprocess.Popen(
            self.start_cmd.split(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 15
        while not _accepts(self.socket):  # the file appears at bind(), connections work after listen()
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("t-script server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(5)

    def restart(self) -> None:
        self.stop()
        self.start()


def _accepts(path: str) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        try:
            sock.connect(path)
        except OSError:
            return False
    return True


def new_server(*args: str) -> Server:
    prefix = short_tmpdir()
    return Server(prefix=prefix, socket=os.path.join(prefix, "t-script.sock"), args=args).start()


def remove_server(server: Server) -> None:
    server.stop()
    shutil.rmtree(server.prefix, ignore_errors=True)


def make_ctx(headers=(), method="GET", path="/p", raw_query="", body=b"", client_ip="10.0.0.7") -> RequestContext:
    req = ClientRequest(
        method=method,
        scheme="http",
        host="example.test",
        port=8000,
        path=path,
        raw_path=path,
        raw_query=raw_query,
        headers=Headers.from_pairs(headers),
        body=body,
        client_ip=client_ip,
        forwarded_ip=client_ip,
        start_time=1700000000.5,
        client_port=40000,
    )
    return RequestContext(request=req, request_id="rid-1")


def script_plugin(plugin_id: str | None = None, **phases) -> Plugin:
    """A t-script Plugin entity whose config is what Kong would hold (nulls for unset optional fields)."""
    config = {"rewrite": None, "access": None, "response": None, "log": None, "report": True}
    config.update({"fail_closed": False, "label": None})
    for key, value in phases.items():
        config[key] = json.dumps(value) if isinstance(value, list) else value
    return Plugin(id=plugin_id or str(uuid.uuid4()), name="t-script", config=config)


def results(ctx: RequestContext, phase: str = "access") -> list:
    """The (data, err) tuples the plugin saw, decoded from its reprs."""
    return [ast.literal_eval(r) for r in ctx.shared[f"results:{phase}"]]


class External:
    """The bits of bridge.PluginRunner a NativeRunner uses, without plugin servers (no external plugin may run)."""

    def __init__(self) -> None:
        from kong_emulator.pdk import PDK

        self.pdk = PDK()
        self.workers = [self]
        self.worker_id = 0

    def worker_for(self, ctx):
        ctx.worker_id = 0
        return self

    async def run_phase(self, plugin, phase, ctx):
        raise AssertionError(f"no external plugin here: {plugin.name}")


class FakeServer:
    """A Unix-socket peer that records every request and answers from a callback (or not at all)."""

    def __init__(self, reply) -> None:
        self.path = os.path.join(short_tmpdir(), "fake.sock")
        self.reply = reply  # (request) -> bytes | None ; None = close the connection
        self.requests: list[tuple[int, list]] = []  # (connection number, request)
        self.raw: list[bytes] = []
        self.connections = 0
        self.close_after_reply = False
        self.delay = lambda req: 0  # seconds to wait before answering `req` (a slow or hung server)

    async def __aenter__(self):
        self.server = await asyncio.start_unix_server(self._handle, self.path)
        return self

    async def __aexit__(self, *exc):
        self.server.close()

    async def _handle(self, reader, writer):
        self.connections += 1
        conn = self.connections
        unpacker = msgpack.Unpacker(raw=False, strict_map_key=False)
        while chunk := await reader.read(4096):
            self.raw.append(chunk)
            unpacker.feed(chunk)
            for req in unpacker:
                self.requests.append((conn, req))
                await asyncio.sleep(self.delay(req))
                out = self.reply(req)
                if out is None:
                    writer.close()
                    return
                writer.write(out)
                await writer.drain()
                if self.close_after_reply:
                    writer.close()
                    return
        writer.close()
