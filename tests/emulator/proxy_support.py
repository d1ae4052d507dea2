"""Helpers for the end-to-end proxy tests: a scriptable upstream in a thread, the sample backend, the probe plugin.

Imported by name (the test directories have no packages). Every emulator these tests start runs in strict mode;
`assert_no_strict_failures` fails a module whose emulator logged a plugin-protocol failure.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
from pathlib import Path

from aiohttp import web
from kong_emulator.testing import EmulatorProcess, PluginEntry, free_port, wait_port

PLUGINS_DIR = Path(__file__).parent / "plugins"
PROBE = PluginEntry("t-proxy-probe", PLUGINS_DIR / "t_proxy_probe.py")


class Upstream:
    """An aiohttp upstream on its own thread and loop.

    GET /echo         -> JSON: the request line and headers as a list of pairs (repeats and case kept)
    GET /headers      -> 200 with upstream-made headers: X-Up, Via, Server, two Set-Cookie, a Connection-listed one
    * /slow?ms=N      -> sleeps; `slow_calls` counts calls, `max_inflight` the most in flight at once
    GET /who          -> its own name (for balancer distribution)
    """

    def __init__(self, name: str = "up") -> None:
        self.name = name
        self.port = free_port()
        self.inflight = 0
        self.max_inflight = 0
        self.hits = 0
        self.slow_calls = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _app(self) -> web.Application:
        async def echo(request: web.Request) -> web.Response:
            body = await request.read()
            return web.json_response(
                {
                    "method": request.method,
                    "path_qs": request.path_qs,
                    "raw_path": request.raw_path,  # the request target byte for byte
                    "headers": [[k, v] for k, v in request.headers.items()],
                    "body": body.decode("latin-1"),
                }
            )

        async def headers(request: web.Request) -> web.Response:
            resp = web.Response(text="upstream body", status=201)
            resp.headers["X-Up"] = "from-upstream"
            resp.headers["Via"] = "1.0 upstream-proxy"
            resp.headers["Server"] = "up-server/1"
            resp.headers.add("Set-Cookie", "a=1")
            resp.headers.add("Set-Cookie", "b=2")
            resp.headers["Connection"] = "X-Hop"
            resp.headers["X-Hop"] = "hop-by-hop, must not reach the client"
            return resp

        async def slow(request: web.Request) -> web.Response:
            self.slow_calls += 1
            self.inflight += 1
            self.max_inflight = max(self.max_inflight, self.inflight)
            try:
                await asyncio.sleep(int(request.query.get("ms", "100")) / 1000)
            finally:
                self.inflight -= 1
            return web.json_response({"slept": True})

        async def who(request: web.Request) -> web.Response:
            self.hits += 1
            return web.Response(text=self.name)

        app = web.Application()
        app.router.add_route("*", "/echo", echo)
        app.router.add_route("*", r"/echo/{tail:[\s\S]*}", echo)
        app.router.add_get("/headers", headers)
        app.router.add_route("*", "/slow", slow)
        app.router.add_get("/who", who)
        return app

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def start() -> None:
            self._runner = web.AppRunner(self._app(), access_log=None, max_headers=10000)  # nginx has no count limit
            await self._runner.setup()
            await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

        self._loop.run_until_complete(start())
        self._ready.set()
        self._loop.run_forever()

    def start(self) -> Upstream:
        self._thread.start()
        self._ready.wait(10)
        return self

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


class SampleBackend:
    """`python -m sample_backend name=port`: the project's stand-in services (`/__echo`, `/__status/<code>`)."""

    def __init__(self, name: str = "stories") -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sample_backend", f"{name}={self.port}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_port(self.port, proc=self.proc)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def pairs_to_multimap(pairs: list[list[str]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for k, v in pairs:
        out.setdefault(k.lower(), []).append(v)
    return out


def assert_no_strict_failures(gw: EmulatorProcess) -> None:
    failures = gw.strict_failures()
    assert not failures, "plugin protocol failures in strict mode:\n" + "\n".join(failures)


def no_traceback(text: str) -> bool:
    return "Traceback (most recent call last)" not in text


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())
