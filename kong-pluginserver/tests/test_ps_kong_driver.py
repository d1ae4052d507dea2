"""Through Kong's own protocol (kong_driver.py, written from Kong 3.9.1's mp_rpc.lua and plugin.lua; raw bytes as
Kong sends them), against both plugin servers: bytes, leaks, budgets and the two-worker restart race.

kong-pdk's rows document the defects kong_pluginserver removes (its expected outcome is the defect)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
from emu_support import SCRIPT, short_tmpdir
from kong_driver import Request, Worker

HERE = Path(__file__).resolve().parent
T_BYTES = HERE / "plugins" / "t_bytes.py"
SERVERS = ("kong_pluginserver", "kong-pdk")


class Proc:
    """A plugin server process (an entry file, as Kong's start_cmd runs it)."""

    def __init__(self, entry: Path, name: str, kind: str, *args: str) -> None:
        self.prefix = short_tmpdir()
        self.path = os.path.join(self.prefix, f"{name}.sock")
        launcher = ["-m", "kong_pluginserver"] if kind == "kong_pluginserver" else []  # t-script imports kong_pdk
        self.argv = [sys.executable, *launcher, str(entry), "-p", self.prefix, "--socket-name", f"{name}.sock", *args]
        self.env = {**os.environ, "SV_PLUGIN_SERVER": kind.replace("_", "-")}
        self.proc: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        if os.path.exists(self.path):
            os.unlink(self.path)
        self.proc = subprocess.Popen(self.argv, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while not os.path.exists(self.path):
            assert time.monotonic() < deadline and self.proc.poll() is None, "plugin server did not start"
            time.sleep(0.02)
        time.sleep(0.05)  # listen() follows bind()

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(5)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def threads(self) -> int:
        return int(_status(self.proc.pid)["Threads"])

    def rss_kib(self) -> int:
        return int(_status(self.proc.pid)["VmRSS"].split()[0])


def _status(pid: int) -> dict:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return dict(line.split(":\t", 1) for line in lines if ":\t" in line)


@pytest.fixture(params=SERVERS)
def t_bytes(request):
    proc = Proc(T_BYTES, "t-bytes", request.param, "--no-lua-style")
    proc.kind = request.param
    yield proc
    proc.stop()


def raw_request() -> Request:
    return Request(
        headers={b"x-latin": b"caf\xe9", b"x-\xff": b"\xfe\x80", b"x-request-id": b"rid-\xe9", b"host": b"a"},
        query={b"a": b"\xe9t\xe9", b"\xff": True},
        body=b"\xe9\x00\xff",
        path=b"/api/v1/stories?a=%E9",
    )


def test_raw_bytes_reach_the_plugin_and_go_back_byte_for_byte(t_bytes):
    worker = Worker(t_bytes.path, "t-bytes")
    pid = str(uuid.uuid4())
    req = raw_request()
    worker.handle_event(pid, {"exit": False, "raise": False, "sleep": 0}, "access", req)
    worker.handle_event(pid, {"exit": False, "raise": False, "sleep": 0}, "log", req)
    if t_bytes.kind == "kong-pdk":
        # raw=False unpacking raises on the first non-UTF-8 str: the connection drops, Kong logs "no data" and
        # the phase is skipped (the request goes on unmetered / unauthenticated)
        assert ("err", "no data") in worker.log and b"seen" not in req.shared
        return
    assert worker.log == []
    assert req.upstream_headers == {b"x-echo": b"caf\xe9"}  # the plugin's str went back as the original bytes
    seen = req.shared[b"seen"]
    assert seen["latin"] == [b"str", 4] and seen["body"] == [b"bytes", 3]  # str (surrogate-escaped); body bytes
    assert seen["headers"] == sorted([b"host", b"x-latin", b"x-request-id", b"x-\xff"])
    assert seen["query"] == sorted([b"a", b"\xff"])
    assert req.shared[b"log"] == {"a": b"\xe9t\xe9", "\udcff": True}  # kong.log.serialize()'s raw bytes parsed


def _status_rpc(worker: Worker) -> dict:
    return worker.call("plugin.GetStatus")


def test_leak_patterns_free_every_event_ours():
    """kong-python-pdk #59 (exit/error), #120/#122 (event queues kept), #137 (PDK after exit), an exception, a
    budget overrun, Kong closing the socket mid-event, a Step Kong never sends: nothing survives its event."""
    proc = Proc(T_BYTES, "t-bytes", "kong_pluginserver", "--budget-ms", "200", "--step-wait-s", "1")
    try:
        worker = Worker(proc.path, "t-bytes")
        base = {"exit": False, "raise": False, "sleep": 0}
        req = raw_request()
        worker.handle_event(str(uuid.uuid4()), {**base, "exit": True}, "access", req)
        assert req.exit == (401, b'{"message":"no"}') and b"after-exit" not in req.shared  # nothing after exit
        worker.handle_event(str(uuid.uuid4()), {**base, "raise": True}, "access", raw_request())
        assert worker.log[-1] == ("err", "unhandled exception in access: RuntimeError: scripted")
        req = raw_request()
        t0 = time.monotonic()
        worker.handle_event(str(uuid.uuid4()), {**base, "sleep": 2.0}, "access", req)
        assert time.monotonic() - t0 < 1.5 and "no answer within 200 ms" in worker.log[-1][1]
        # Kong closes the socket while the plugin waits for a Step, and another event whose Step never comes
        iid = worker.instance_id("p-close", base)
        for _ in range(2):
            step = worker.call("plugin.HandleEvent", {"InstanceId": iid, "EventName": "access"})
            assert step["Data"]["Method"] == b"kong.request.get_header"
        worker.pool.pop().close()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            status = _status_rpc(worker)
            if status["Events"] == 0:
                break
            time.sleep(0.2)
        assert status["Events"] == 0 and status["Abandoned"] >= 3, status
        time.sleep(2.2)  # the sleeping plugin's thread unwinds after its sleep
        assert proc.threads() == 1
    finally:
        proc.stop()


@pytest.mark.parametrize("kind", SERVERS)
def test_10k_raw_byte_requests_threads_and_rss_flat(kind):
    proc = Proc(T_BYTES, "t-bytes", kind, "--no-lua-style")
    try:
        workers = [Worker(proc.path, "t-bytes"), Worker(proc.path, "t-bytes")]
        plugin_ids = [str(uuid.uuid4()) for _ in range(3)]
        configs = [{"exit": False, "raise": False, "sleep": 0}, {"exit": True, "raise": False, "sleep": 0},
                   {"exit": False, "raise": True, "sleep": 0}]  # fmt: skip

        def run(n: int) -> None:
            for i in range(n):
                w, k = workers[i % 2], i % 3
                req = raw_request()
                w.handle_event(plugin_ids[k], configs[k], "access", req)
                if k == 0:
                    w.handle_event(plugin_ids[k], configs[k], "log", req)

        run(1000)
        threads0, rss0 = proc.threads(), proc.rss_kib()
        run(10_000 if kind == "kong_pluginserver" else 300)
        threads1, rss1 = proc.threads(), proc.rss_kib()
        if kind == "kong-pdk":  # a thread per dropped connection's event, never ended
            assert threads1 > threads0 + 50
            return
        assert threads1 == threads0, (threads0, threads1)  # one thread (the hub): no thread per event
        assert rss1 - rss0 < 1024, (rss0, rss1)  # KiB over 10k requests (≈ 15k events, a third exit, a third raise)
        assert _status_rpc(workers[0])["Events"] == 0
    finally:
        proc.stop()


def _route_run(worker: Worker, route: str, plugin_ids: dict, out: list) -> None:
    """One request on ``route``: t-script's access sets kong.ctx.shared "route" to its config's route name."""
    conf = {"access": json.dumps([["kong.ctx.shared.set", ["route", route]]]), "report": False}
    req = Request()
    worker.handle_event(plugin_ids[route], conf, "access", req)
    out.append((route, req.shared.get(b"route")))


@pytest.mark.parametrize("kind", SERVERS)
def test_two_worker_restart_race(kind):
    """Worker B caches route Y's instance id, the server restarts, worker A re-creates route X's instance first.
    kong-pdk numbers from 0 again, so B's stale id now names X's instance: Y's request runs under X's config."""
    proc = Proc(SCRIPT, "t-script", kind)
    try:
        a, b = Worker(proc.path, "t-script"), Worker(proc.path, "t-script")
        ids = {"X": str(uuid.uuid4()), "Y": str(uuid.uuid4())}
        out: list = []
        _route_run(b, "Y", ids, out)  # B: Y → first id
        _route_run(a, "X", ids, out)  # A: X → second id
        proc.kill9()
        proc.start()
        _route_run(a, "X", ids, out)  # A: stale → "no plugin instance" → X re-created with the first id (kong-pdk)
        _route_run(b, "Y", ids, out)  # B: its stale id for Y
        wrong = [(route, ran) for route, ran in out if ran != route.encode()]
        if kind == "kong-pdk":
            assert wrong == [("Y", b"X")]
        else:
            assert wrong == [] and ("warn", f"no plugin instance #{b.instances[ids['Y']][0]}") not in a.log
    finally:
        proc.stop()


def test_kill9_restart_under_load_two_workers_no_request_under_another_routes_config_ours():
    proc = Proc(SCRIPT, "t-script", "kong_pluginserver")
    try:
        routes = {f"R{i}": str(uuid.uuid4()) for i in range(6)}
        out: list = []
        stop = threading.Event()

        def load(worker: Worker) -> None:
            i = 0
            while not stop.is_set():
                route = f"R{i % len(routes)}"
                _route_run(worker, route, routes, out)
                i += 1

        workers = [Worker(proc.path, "t-script", timeout=5), Worker(proc.path, "t-script", timeout=5)]
        threads = [threading.Thread(target=load, args=(w,)) for w in workers]
        for t in threads:
            t.start()
        for _ in range(3):
            time.sleep(0.5)
            proc.kill9()
            proc.start()
        time.sleep(0.5)
        stop.set()
        for t in threads:
            t.join(30)
        ran = [(route, got) for route, got in out if got is not None]
        assert len(ran) > 100 and all(got == route.encode() for route, got in ran)
        assert any(level == "warn" for w in workers for level, _ in w.log)  # the restarts were seen by Kong
    finally:
        proc.stop()
