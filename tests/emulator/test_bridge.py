"""§1.15 items 2-9 through `PluginRunner`, against a real kong-pdk dedicated server (t-script) as our child."""

from __future__ import annotations

import asyncio
import json

import pytest
from emu_support import make_ctx, new_server, remove_server, results, script_plugin
from kong_emulator.plugin_servers.bridge import PluginProtocolError, PluginRunner, config_json
from kong_emulator.plugin_servers.rpc import RpcClient, SocketPool
from kong_emulator.runloop.context import Headers, LogSnapshot


@pytest.fixture(scope="module")
def server():
    srv = new_server()
    yield srv
    remove_server(srv)


def runner_for(server, **kwargs):
    trace: list = []
    return PluginRunner({"t-script": server.socket}, trace=trace, **kwargs), trace


def methods(trace):
    return [m for m, _ in trace]


async def server_status(server):
    return await RpcClient(SocketPool(server.socket)).call("plugin.GetStatus")


# -- item 2: lazy StartInstance, Config a JSON string, reuse rule -----------------------------------------


def test_2_start_instance_lazily_with_config_json_string(server):
    plugin = script_plugin(access=[["kong.plugin.get_id", []]])
    plugin.route_id = "r-1"

    async def main():
        runner, trace = runner_for(server)
        assert trace == []  # nothing at construction: instances are lazy
        ctx = make_ctx()
        await runner.run_phase(plugin, "access", ctx)
        name, (params,) = trace[0]
        assert name == "plugin.StartInstance" and isinstance(params["Config"], str)
        conf = json.loads(params["Config"])
        assert conf["__plugin_id"] == plugin.id and conf["__seq__"] == 1
        assert conf["__key__"] == plugin.cache_key and conf["__ws_id"]
        assert conf["route_id"] == "r-1" and "service_id" not in conf
        assert conf["label"] is None and "label" in conf  # unset optional fields are null
        assert results(ctx) == [(plugin.id, None)]
        status = await server_status(server)
        inst = [i for i in status["Plugins"]["t-script"]["Instances"] if i["Config"]["__plugin_id"] == plugin.id]
        assert inst and inst[0]["Config"]["route_id"] == "r-1"
        await runner.close()

    asyncio.run(main())


def test_2_config_json_is_cjson_like():
    assert config_json({"u": "http://a/b", "n": None}) == '{"u":"http:\\/\\/a\\/b","n":null}'


def test_2_reuse_same_seq_and_new_seq_starts_then_closes_old(server):
    plugin = script_plugin(access=[])

    async def main():
        runner, trace = runner_for(server)
        for _ in range(3):
            await runner.run_phase(plugin, "access", make_ctx())
        assert methods(trace).count("plugin.StartInstance") == 1
        old_id = runner.workers[0].instance_ids()[plugin.id]
        runner.bump_seq()
        trace.clear()
        await runner.run_phase(plugin, "access", make_ctx())
        assert methods(trace)[:3] == ["plugin.StartInstance", "plugin.CloseInstance", "plugin.HandleEvent"]
        assert trace[1][1] == (old_id,)  # CloseInstance takes the bare old id
        assert json.loads(trace[0][1][0]["Config"])["__seq__"] == 2
        await runner.close()

    asyncio.run(main())


def test_2_instances_and_msgids_per_worker(server):
    plugin = script_plugin(access=[])

    async def main():
        runner, trace = runner_for(server, workers=2)
        for _ in range(4):
            await runner.run_phase(plugin, "access", make_ctx())
        assert methods(trace).count("plugin.StartInstance") == 2  # one instance per worker
        ids = [w.instance_ids()[plugin.id] for w in runner.workers]
        assert ids[0] != ids[1]
        assert [w.rpc("t-script").msg_id for w in runner.workers] == [5, 5]  # 1 start + 2x(event+ret) each
        await runner.close()

    asyncio.run(main())


def test_2_concurrent_requests_wait_for_the_claim(server):
    plugin = script_plugin(access=[["kong.request.get_method", []]])

    async def main():
        runner, trace = runner_for(server)
        ctxs = [make_ctx() for _ in range(5)]
        await asyncio.gather(*(runner.run_phase(plugin, "access", c) for c in ctxs))
        assert methods(trace).count("plugin.StartInstance") == 1
        assert all(results(c) == [("GET", None)] for c in ctxs)
        await runner.close()

    asyncio.run(main())


# -- items 3, 4: HandleEvent + Step loop, Step variants, fix_mmap / fix_raw, never StepError -------------------


def test_3_step_loop_event_id_and_absent_data(server):
    plugin = script_plugin(
        access=[["kong.service.request.set_header", ["X-User", "u1"]], ["kong.request.get_header", ["x-none"]]]
    )

    async def main():
        runner, trace = runner_for(server)
        ctx = make_ctx()
        await runner.run_phase(plugin, "access", ctx)
        event = trace[1][1][0]
        assert trace[1][0] == "plugin.HandleEvent" and event["EventName"] == "access"
        steps = [p[0] for m, p in trace[2:]]
        assert all("Data" not in s for s in steps[:2])  # nil results: no Data key at all
        assert len({s["EventId"] for s in steps}) == 1
        assert ctx.upstream.headers.get("X-User") == "u1"
        await runner.close()

    asyncio.run(main())


def test_3_step_variants_and_fix_mmap_fix_raw(server):
    plugin = script_plugin(
        access=[
            ["kong.request.get_headers", []],
            ["kong.request.get_query", []],
            ["kong.request.get_raw_body", []],
            ["kong.router.get_route", []],
            ["kong.client.get_consumer", []],
            ["kong.client.get_credential", []],
            ["kong.request.get_uri_captures", []],
        ]
    )

    async def main():
        runner, trace = runner_for(server)
        ctx = make_ctx(headers=[("A", "1"), ("a", "2")], raw_query="x=1&flag", body=b"\x00\xff")
        ctx.captures = {"unnamed": {0: "/u/42", 1: "42"}, "named": {}}
        await runner.run_phase(plugin, "access", ctx)
        assert methods(trace)[2:] == [
            "plugin.StepMultiMap",
            "plugin.StepMultiMap",
            "plugin.Step",
            "plugin.StepRoute",
            "plugin.StepConsumer",
            "plugin.StepCredential",
            "plugin.Step",
            "plugin.Step",  # the plugin's own kong.ctx.shared.set report
        ]
        assert "plugin.StepError" not in methods(trace)  # item 4: never in 3.x
        got = results(ctx)
        assert got[0] == ({"a": ["1", "2"]}, None)
        assert got[1] == ({"x": ["1"], "flag": []}, None)
        assert got[2] == (b"\x00\xff", None)  # bin → bytes
        assert got[3:6] == [(None, None)] * 3
        assert got[6] == ({"unnamed": {0: "/u/42", 1: "42"}, "named": []}, None)  # int keys, empty → []
        await runner.close()

    asyncio.run(main())


def test_3_empty_multimap_is_an_empty_map(server):
    plugin = script_plugin(access=[["kong.request.get_query", []]])

    async def main():
        runner, _ = runner_for(server)
        ctx = make_ctx()
        await runner.run_phase(plugin, "access", ctx)
        assert results(ctx) == [({}, None)]
        await runner.close()

    asyncio.run(main())


# -- item 5: terminal exit / error ----------------------------------------------------------------------------


def test_5_exit_records_response_and_sends_no_further_step(server):
    plugin = script_plugin(access=[["kong.response.exit", [403, {"message": "denied"}, {"X-Reason": "t"}]]])

    async def main():
        runner, trace = runner_for(server)
        ctx = make_ctx()
        await runner.run_phase(plugin, "access", ctx)
        assert methods(trace)[-1] == "plugin.Step"  # the report; then exit came back and nothing followed
        assert ctx.exit.status == 403 and ctx.exit.source == "exit"
        assert ctx.exit.body == b'{"message":"denied"}'
        assert ctx.exit.headers.get("Content-Type") == "application/json; charset=utf-8"
        assert ctx.exit.headers.get("X-Reason") == "t"
        # the same event answered "event id N not found" had we stepped again: the next event works normally
        ctx2 = make_ctx()
        await runner.run_phase(script_plugin(access=[]), "access", ctx2)
        assert ctx2.exit is None and not [x for x in ctx2.log_lines if x[0] == "err"]
        await runner.close()

    asyncio.run(main())


def test_5_error_formats_body_from_accept(server):
    plugin = script_plugin(access=[["kong.response.error", [429]]])

    async def main():
        runner, _ = runner_for(server)
        ctx = make_ctx(headers=[("Accept", "text/plain")])
        await runner.run_phase(plugin, "access", ctx)
        assert ctx.exit.status == 429
        assert ctx.exit.body == b"Too many requests\nrequest_id: rid-1\n"
        assert ctx.exit.headers.get("Content-Type") == "text/plain; charset=utf-8"
        await runner.close()

    asyncio.run(main())


# -- item 6: "no plugin instance" restart & retry; other errors fail open; fail-closed plugin ---------------


def test_6_no_plugin_instance_restarts_and_retries_same_phase():
    server = new_server()
    plugin = script_plugin(access=[["kong.request.get_method", []]])
    try:

        async def main():
            runner, trace = runner_for(server)
            await runner.run_phase(plugin, "access", make_ctx())
            server.restart()  # the new server knows no instances
            await asyncio.sleep(0.05)  # the event loop sees the old connections close, as nginx's keepalive handler
            trace.clear()
            ctx = make_ctx()
            await runner.run_phase(plugin, "access", ctx)
            assert methods(trace)[:3] == ["plugin.HandleEvent", "plugin.StartInstance", "plugin.HandleEvent"]
            assert ("warn", "t-script", "no plugin instance #0") in ctx.log_lines
            assert results(ctx) == [("GET", None)] and ctx.exit is None
            await runner.close()

        asyncio.run(main())
    finally:
        remove_server(server)


def test_6_other_errors_are_logged_and_the_request_fails_open(server):
    plugin = script_plugin(access=[["kong.request.get_method", []], ["!raise", "bug"]])

    async def main():
        runner, _ = runner_for(server, reply_timeout=0.3)
        ctx = make_ctx()
        await runner.run_phase(plugin, "access", ctx)
        assert ctx.exit is None  # Kong lets the request through
        assert ("err", "t-script", "timeout") in ctx.log_lines
        await runner.close()

    asyncio.run(main())


def test_6_strict_mode_raises_instead_of_failing_open(server):
    plugin = script_plugin(access=[["kong.request.get_method", []], ["!raise", "bug"]])

    async def main():
        runner, _ = runner_for(server, reply_timeout=0.3, strict=True)
        with pytest.raises(PluginProtocolError, match="timeout"):
            await runner.run_phase(plugin, "access", make_ctx())
        await runner.close()

    asyncio.run(main())


def test_6_raise_before_first_pdk_call_blocks_every_later_event():
    """kong-pdk holds its HandleEvent lock until the first PDK call: a raise before it wedges the server."""
    server = new_server()
    try:

        async def main():
            runner, _ = runner_for(server, reply_timeout=0.3)
            first = make_ctx()
            await runner.run_phase(script_plugin(access=[["!raise", "early"]]), "access", first)
            later = make_ctx()
            await runner.run_phase(script_plugin(access=[["kong.request.get_method", []]]), "access", later)
            assert ("err", "t-script", "timeout") in later.log_lines and "results:access" not in later.shared
            await runner.close()

        asyncio.run(main())
    finally:
        remove_server(server)


def test_6_dead_server_fails_open_with_connect_error():
    async def main():
        runner = PluginRunner({"t-script": "/tmp/emu-missing.sock"})
        ctx = make_ctx()
        await runner.run_phase(script_plugin(access=[]), "access", ctx)
        # StartInstance's connect fails: Kong raises error(err) (plugin.lua:281-286) → 500 in access, flushed as
        # kong.response.error (init.lua:407-410, 506-508): the JSON template with the request id
        assert ctx.exit.status == 500 and ctx.exit.source == "error"
        assert ctx.exit.body == b'{\n  "message":"An unexpected error occurred",\n  "request_id":"rid-1"\n}'

    asyncio.run(main())


def test_6_plugin_itself_fails_closed(server):
    plugin = script_plugin(access=[["kong.request.get_method", []], ["!raise", "bug"]], fail_closed=True)

    async def main():
        runner, _ = runner_for(server, reply_timeout=2)
        ctx = make_ctx()
        await runner.run_phase(plugin, "access", ctx)
        assert ctx.exit.status == 500 and b"failed closed" in ctx.exit.body
        await runner.close()

    asyncio.run(main())


def test_6_lua_error_in_access_is_500(server):
    plugin = script_plugin(access=[["kong.client.authenticate", [None, None]]])

    async def main():
        runner, _ = runner_for(server)
        ctx = make_ctx()
        await runner.run_phase(plugin, "access", ctx)
        assert ctx.exit.status == 500 and ctx.exit.source == "error"
        assert ("err", "t-script", "either credential or consumer must be provided") in ctx.log_lines
        await runner.close()

    asyncio.run(main())


# -- item 7: log phase after the response, from the snapshot -------------------------------------------------


def test_7_log_phase_reads_the_snapshot(server):
    plugin = script_plugin(
        log=[
            ["kong.ctx.shared.get", ["uid"]],
            ["kong.log.serialize", []],
            ["kong.response.get_status", []],
            ["kong.response.get_header", ["x-up"]],
            ["kong.request.get_header", ["x-a"]],
        ]
    )
    timer_only = script_plugin(log=[["kong.request.get_path", []]], report=False)

    async def main():
        runner, _ = runner_for(server)
        ctx = make_ctx(headers=[("X-A", "1")])
        ctx.shared["uid"] = "u1"
        ctx.snapshot = LogSnapshot.take(ctx, {"request": {"id": "rid-1"}}, Headers([("X-Up", "v")]), 201)
        ctx.request.headers.set("X-A", "changed-after-snapshot")
        ctx.phase = "log"
        await runner.run_phase(plugin, "log", ctx)
        got = results(ctx, "log")
        assert got[0] == ("u1", None)
        assert isinstance(got[1][0], str) and json.loads(got[1][0]) == {"request": {"id": "rid-1"}}
        assert got[2:5] == [(201, None), ("v", None), ("1", None)]
        # get_path runs in the log timer: a Lua error, logged; the event is abandoned (no exit in log)
        await runner.run_phase(timer_only, "log", ctx)
        assert ("err", "t-script", "API disabled in the context of ngx.timer") in ctx.log_lines
        assert ctx.exit is None
        await runner.close()

    asyncio.run(main())


def test_7_exit_in_log_is_a_logged_lua_error(server):
    plugin = script_plugin(log=[["kong.response.exit", [200]]], report=False)

    async def main():
        runner, _ = runner_for(server)
        ctx = make_ctx()
        await runner.run_phase(plugin, "log", ctx)
        assert ctx.exit is None
        assert any(lvl == "err" and "cannot be called in log phase" in m for lvl, _, m in ctx.log_lines)
        await runner.close()

    asyncio.run(main())


# -- item 8: reply timeout ------------------------------------------------------------------------------------


def test_8_reply_timeout_is_configurable_and_fails_strict(server):
    plugin = script_plugin(access=[["kong.request.get_method", []], ["!sleep", 0.5]])

    async def main():
        runner, _ = runner_for(server, reply_timeout=0.1, strict=True)
        with pytest.raises(PluginProtocolError, match="timeout"):
            await runner.run_phase(plugin, "access", make_ctx())
        await runner.close()

    asyncio.run(main())


# -- item 9: unknown PDK method ----------------------------------------------------------------------------


def test_9_unknown_pdk_method_answers_step_without_data(server):
    plugin = script_plugin(access=[["kong.ctx.plugin.set", ["k", "v"]], ["kong.ctx.plugin.get", ["k"]]])

    async def main():
        runner, trace = runner_for(server)
        ctx = make_ctx()
        await runner.run_phase(plugin, "access", ctx)
        assert results(ctx) == [(None, None), (None, None)]
        assert trace[2] == ("plugin.Step", ({"EventId": trace[2][1][0]["EventId"]},))
        assert ("err", "t-script", "could not find pdk method: kong.ctx.plugin.get") in ctx.log_lines
        await runner.close()

    asyncio.run(main())
