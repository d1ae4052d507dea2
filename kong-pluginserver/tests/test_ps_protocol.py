"""The protocol suite, parametrized over both plugin servers: kong_pluginserver (the default) and kong-pdk 0.36's
own server (the fallback, SV_PLUGIN_SERVER=kong-pdk), each running the same t-script plugin class (its entry file
unchanged; kong_pluginserver's through ``python -m kong_pluginserver``), driven by the emulator's RPC client and
bridge. Tests named ``*_ours`` check what only kong_pluginserver does (no hang, no leak, drain on SIGTERM)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import time
from types import SimpleNamespace

import pytest
from emu_support import PYTHON, SCRIPT, Server, make_ctx, remove_server, results, script_plugin, short_tmpdir
from kong_emulator.plugin_servers.bridge import PluginRunner
from kong_emulator.plugin_servers.pluginserver import PluginServerProcess, query_plugin_info
from kong_emulator.plugin_servers.rpc import RpcClient, RPCError, SocketPool
from kong_emulator.runloop.context import Headers, LogSnapshot

OURS = f"{PYTHON} -m kong_pluginserver {SCRIPT}"
SERVERS = ("kong_pluginserver", "kong-pdk")


class OurServer(Server):
    @property
    def start_cmd(self) -> str:
        extra = " ".join(self.args)
        return f"{OURS} -p {self.prefix} --socket-name t-script.sock {extra}".strip()


def new_server(kind: str = "kong_pluginserver", *args: str) -> Server:
    prefix = short_tmpdir()
    cls = OurServer if kind == "kong_pluginserver" else Server
    return cls(prefix=prefix, socket=os.path.join(prefix, "t-script.sock"), args=args).start()


@pytest.fixture(scope="module", params=SERVERS)
def server(request):
    srv = new_server(request.param)
    srv.kind = request.param
    yield srv
    remove_server(srv)


@pytest.fixture(scope="module")
def ours():
    srv = new_server()
    yield srv
    remove_server(srv)


def runner_for(server, **kwargs):
    trace: list = []
    return PluginRunner({"t-script": server.socket}, trace=trace, **kwargs), trace


def methods(trace):
    return [m for m, _ in trace]


async def status(server):
    return await RpcClient(SocketPool(server.socket)).call("plugin.GetStatus")


# -- the query command and the RPC surface ------------------------------------------------------------------


def test_dump_is_byte_identical_to_kong_pdk():
    pdk = subprocess.run([PYTHON, SCRIPT, "--dump"], capture_output=True, check=True).stdout
    fast = subprocess.run([*OURS.split(), "--dump"], capture_output=True, check=True).stdout
    assert fast == pdk and not fast.endswith(b"\n")
    info = asyncio.run(query_plugin_info(SimpleNamespace(name="t", query_cmd=f"{OURS} --dump")))
    assert info.name == "t-script" and set(info.phases) == {"rewrite", "access", "response", "log"}


def test_unknown_method_namespace_and_instance_errors(server):
    async def main():
        rpc = RpcClient(SocketPool(server.socket))
        with pytest.raises(RPCError, match=r"^'PluginServer' object has no attribute 'bogus'$"):
            await rpc.call("plugin.Bogus")
        with pytest.raises(RPCError, match=r"^RPC for other is not supported$"):
            await rpc.call("other.Thing")
        with pytest.raises(RPCError, match=r"^no plugin instance #999$"):
            await rpc.call("plugin.HandleEvent", {"InstanceId": 999, "EventName": "access"})
        with pytest.raises(RPCError, match=r"^nope not initizlied$"):
            await rpc.call("plugin.StartInstance", {"Name": "nope", "Config": "{}"})
        with pytest.raises(RPCError, match="the JSON object must be str, bytes or bytearray, not dict"):
            await rpc.call("plugin.StartInstance", {"Name": "t-script", "Config": {}})
        with pytest.raises(RPCError, match=r"^event id 12345 not found$"):
            await rpc.call("plugin.Step", {"EventId": 12345})
        with pytest.raises(RPCError, match=r"^no plugin instance #77$"):
            await rpc.call("plugin.CloseInstance", 77)
        got = await rpc.call("plugin.GetStatus")
        assert got["Pid"] != os.getpid() and set(got["Plugins"]["t-script"]) >= {
            "Name", "Modtime", "LoadTime", "Instances", "LastStartInstance", "LastCloseInstance"}  # fmt: skip
        assert (await rpc.call("plugin.GetPluginInfo", "t-script"))["Priority"] == 1000
        assert rpc.msg_id == 9

    asyncio.run(main())


def test_the_verified_exchange_of_the_protocol_doc(server):
    """Kong 3.9.1 mp_rpc.lua (Rpc:handle_event): StartInstance → HandleEvent → Step (Data) → Step (no Data) → ret."""
    config = {"access": json.dumps([["kong.request.get_header", ["x-mode"]]]), "report": True, "__seq__": 1}

    async def main():
        rpc = RpcClient(SocketPool(server.socket))
        start = await rpc.call("plugin.StartInstance", {"Name": "t-script", "Config": json.dumps(config)})
        assert set(start) == {"Name", "Id", "Config", "StartTime"} and start["Config"] == config
        first = await rpc.call("plugin.HandleEvent", {"InstanceId": start["Id"], "EventName": "access"})
        assert first["Data"] == {"Method": "kong.request.get_header", "Args": ["x-mode"]}
        eid = first["EventId"]
        nxt = await rpc.call("plugin.Step", {"EventId": eid, "Data": "alice"})
        assert nxt == {"Data": {"Method": "kong.ctx.shared.set", "Args": ["results:access", ["('alice', None)"]]},
                       "EventId": eid}  # fmt: skip
        assert await rpc.call("plugin.Step", {"EventId": eid}) == {"Data": "ret", "EventId": eid}
        with pytest.raises(RPCError, match=f"^event id {eid} not found$"):
            await rpc.call("plugin.Step", {"EventId": eid})
        closed = await rpc.call("plugin.CloseInstance", start["Id"])
        assert closed == {"Name": "t-script", "Id": start["Id"], "Config": config}

    asyncio.run(main())


# -- through the bridge (test_bridge.py's items) -------------------------------------------------------------


def test_2_lazy_start_reuse_and_new_seq_closes_old(server):
    plugin = script_plugin(access=[["kong.plugin.get_id", []]])

    async def main():
        runner, trace = runner_for(server)
        ctx = make_ctx()
        for _ in range(3):
            await runner.run_phase(plugin, "access", ctx)
        assert methods(trace).count("plugin.StartInstance") == 1
        assert results(ctx) == [(plugin.id, None)]
        old_id = runner.workers[0].instance_ids()[plugin.id]
        runner.bump_seq()
        trace.clear()
        await runner.run_phase(plugin, "access", make_ctx())
        assert methods(trace)[:3] == ["plugin.StartInstance", "plugin.CloseInstance", "plugin.HandleEvent"]
        assert trace[1][1] == (old_id,)
        await runner.close()

    asyncio.run(main())


def test_2_concurrent_events_and_workers(server):
    plugin = script_plugin(access=[["kong.request.get_method", []]])

    async def main():
        runner, trace = runner_for(server, workers=2)
        ctxs = [make_ctx(method=m) for m in ("GET", "POST", "PUT", "DELETE", "PATCH", "GET")]
        await asyncio.gather(*(runner.run_phase(plugin, "access", c) for c in ctxs))
        assert methods(trace).count("plugin.StartInstance") == 2  # one per worker
        assert [results(c) for c in ctxs] == [[(c.request.method, None)] for c in ctxs]
        await runner.close()

    asyncio.run(main())


def test_3_step_variants_fix_mmap_fix_raw_and_lua_style(server):
    plugin = script_plugin(
        access=[
            ["kong.request.get_headers", []],
            ["kong.request.get_query", []],
            ["kong.request.get_raw_body", []],
            ["kong.router.get_route", []],
            ["kong.client.get_consumer", []],
            ["kong.client.get_credential", []],
            ["kong.request.get_uri_captures", []],
            ["kong.service.request.set_header", ["X-User", "u1"]],
        ]
    )

    async def main():
        runner, trace = runner_for(server)
        ctx = make_ctx(headers=[("A", "1"), ("a", "2")], raw_query="x=1&flag", body=b"\x00\xff")
        ctx.captures = {"unnamed": {0: "/u/42", 1: "42"}, "named": {}}
        await runner.run_phase(plugin, "access", ctx)
        assert methods(trace)[2:] == [
            "plugin.StepMultiMap", "plugin.StepMultiMap", "plugin.Step", "plugin.StepRoute", "plugin.StepConsumer",
            "plugin.StepCredential", "plugin.Step", "plugin.Step", "plugin.Step",
        ]  # fmt: skip
        got = results(ctx)  # lua style (kong-pdk's default): every call returns (data, err)
        assert got[0] == ({"a": ["1", "2"]}, None)
        assert got[1] == ({"x": ["1"], "flag": []}, None)
        assert got[2] == (b"\x00\xff", None)
        assert got[6] == ({"unnamed": {0: "/u/42", 1: "42"}, "named": []}, None)
        assert ctx.upstream.headers.get("X-User") == "u1"
        await runner.close()

    asyncio.run(main())


@pytest.mark.parametrize("kind", SERVERS)
def test_no_lua_style_returns_bare_values_and_log_args_are_sanitised(kind):
    srv = new_server(kind, "--no-lua-style")
    plugin = script_plugin(access=[["kong.request.get_method", []], ["kong.log.err", ["x", 1.5, None, True]]])
    try:

        async def main():
            runner, _ = runner_for(srv)
            ctx = make_ctx()
            await runner.run_phase(plugin, "access", ctx)
            assert results(ctx) == ["GET", None]
            assert ("err", "t-script", "x1.5NoneTrue") in ctx.log_lines  # kong-pdk: non str/int/list/dict → str()
            await runner.close()

        asyncio.run(main())
    finally:
        remove_server(srv)


def test_5_exit_ends_the_event_and_frees_it_ours(ours):
    server = ours
    first_exit = script_plugin(access=[["kong.response.exit", [401, {"message": "no"}]]], report=False)
    later_exit = script_plugin(access=[["kong.request.get_method", []], ["kong.response.exit", [403, "denied"]]])

    async def main():
        runner, trace = runner_for(server)
        ctx = make_ctx()
        await runner.run_phase(first_exit, "access", ctx)
        assert ctx.exit.status == 401 and ctx.exit.body == b'{"message":"no"}'
        ctx2 = make_ctx()
        await runner.run_phase(later_exit, "access", ctx2)
        assert ctx2.exit.status == 403 and ctx2.exit.body == b"denied"
        assert methods(trace)[-1] == "plugin.Step"  # the report; exit came back and nothing followed
        # kong-pdk keeps the event of an exit sent as the first message forever (a leak): here none is left
        assert (await status(server))["Events"] == 0
        await runner.close()

    asyncio.run(main())


@pytest.mark.parametrize("kind", SERVERS)
def test_6_no_plugin_instance_restarts_and_retries_same_phase(kind):
    srv = new_server(kind)
    plugin = script_plugin(access=[["kong.request.get_method", []]])
    try:

        async def main():
            runner, trace = runner_for(srv)
            await runner.run_phase(plugin, "access", make_ctx())
            srv.restart()
            trace.clear()
            ctx = make_ctx()
            await runner.run_phase(plugin, "access", ctx)
            assert methods(trace)[:3] == ["plugin.HandleEvent", "plugin.StartInstance", "plugin.HandleEvent"]
            warned = [m for level, _, m in ctx.log_lines if level == "warn"]
            assert any(re.fullmatch(r"no plugin instance #\d+", m) for m in warned), warned
            assert results(ctx) == [("GET", None)]
            await runner.close()

        asyncio.run(main())
    finally:
        remove_server(srv)


def test_6_a_raise_is_answered_at_once_and_wedges_nothing_ours():
    """kong-pdk never answers (Kong waits 60 s, then fails open) and a raise before the first PDK call blocks every
    later event start. Here: an immediate error reply (Kong logs it and fails open, as it would after the wait)."""
    srv = new_server()
    try:

        async def main():
            runner, _ = runner_for(srv, reply_timeout=5)
            early = make_ctx()
            t0 = time.monotonic()
            await runner.run_phase(script_plugin(access=[["!raise", "early"]]), "access", early)
            late = make_ctx()
            await runner.run_phase(script_plugin(access=[["kong.request.get_method", []], ["!raise", "x"]]), "access",
                                   late)  # fmt: skip
            assert time.monotonic() - t0 < 2
            assert ("err", "t-script", "unhandled exception in access: RuntimeError: early") in early.log_lines
            assert early.exit is None and late.exit is None  # Kong: logged, the request goes on (fail open)
            after = make_ctx()
            await runner.run_phase(script_plugin(access=[["kong.request.get_method", []]]), "access", after)
            assert results(after) == [("GET", None)]
            closed = make_ctx()
            await runner.run_phase(script_plugin(access=[["!raise", "x"]], fail_closed=True), "access", closed)
            assert closed.exit.status == 500 and b"failed closed" in closed.exit.body
            assert (await status(srv))["Events"] == 0
            await runner.close()

        asyncio.run(main())
    finally:
        remove_server(srv)


def test_7_log_phase_reads_the_snapshot_and_9_unknown_pdk_method(server):
    plugin = script_plugin(
        access=[["kong.ctx.plugin.get", ["k"]]],
        log=[["kong.ctx.shared.get", ["uid"]], ["kong.log.serialize", []], ["kong.response.get_status", []]],
    )

    async def main():
        runner, _ = runner_for(server)
        ctx = make_ctx()
        await runner.run_phase(plugin, "access", ctx)
        assert results(ctx) == [(None, None)]
        ctx.shared["uid"] = "u1"
        ctx.snapshot = LogSnapshot.take(ctx, {"request": {"id": "rid-1"}}, Headers([("X-Up", "v")]), 201)
        ctx.phase = "log"
        await runner.run_phase(plugin, "log", ctx)
        got = results(ctx, "log")
        assert got[0] == ("u1", None) and json.loads(got[1][0]) == {"request": {"id": "rid-1"}}
        assert got[2] == (201, None)
        await runner.close()

    asyncio.run(main())


# -- process behaviour (test_pluginserver.py's items) -----------------------------------------------------------


def test_supervised_by_the_emulator_json_logs_and_sigterm_drains_ours():
    prefix = short_tmpdir()
    start = f"{OURS} -p {prefix} --socket-name t-script.sock"
    path = os.path.join(prefix, "t-script.sock")
    sdef = SimpleNamespace(name="t-script", socket=path, start_cmd=start, query_cmd=None)
    proc = PluginServerProcess(sdef)

    async def main():
        await proc.start()
        with open(f"/proc/{proc.pid}/stat") as f:
            assert int(f.read().rsplit(")", 1)[1].split()[1]) == os.getpid()  # exec'd: our direct child
        for _ in range(100):
            if proc.lines:
                break
            await asyncio.sleep(0.05)
        assert proc.lines and all(line.startswith(f"[t-script:{proc.pid}] ") for line in proc.lines)
        health = json.loads(proc.lines[0].split("] ", 1)[1])
        assert health["msg"] == "started" and health["plugin"] == "t-script" and health["pid"] == proc.pid
        assert health["protocol"] == "MsgPack:1" and health["version"] == "0.1.0" and health["budget_ms"] == 1000
        await proc.stop()
        assert proc.proc.returncode == 0  # SIGTERM drains in-flight events, then exits cleanly
        assert not os.path.exists(path)

    asyncio.run(main())


def test_watchdog_exits_when_the_parent_dies_ours():
    prefix = short_tmpdir()
    sock = os.path.join(prefix, "t-script.sock")
    parent = subprocess.Popen(
        ["sh", "-c", f"{OURS} -p {prefix} --socket-name t-script.sock >/dev/null 2>&1 & echo $!; sleep 60"],
        stdout=subprocess.PIPE,
    )
    child = int(parent.stdout.readline())
    deadline = time.monotonic() + 15
    while not os.path.exists(sock) and time.monotonic() < deadline:
        time.sleep(0.05)
    parent.kill()
    parent.wait(5)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{child}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    break
        except FileNotFoundError:
            break
        time.sleep(0.1)
    else:
        os.kill(child, signal.SIGKILL)
        pytest.fail("the server outlived its parent by 5 s")


def test_prefix_must_exist_ours():
    out = subprocess.run([*OURS.split(), "-p", "/nonexistent-emu-prefix/"], capture_output=True, timeout=20)
    assert out.returncode != 0 and b"doesn't exist" in out.stderr
