"""Kong 3.9.1 kong/runloop/plugin_servers/: the MessagePack-RPC client (rpc/mp_rpc.lua), instances (plugin.lua),
process supervision (process.lua, init.lua). Driven through the protocol: fake peers and a byte-safe server."""

from __future__ import annotations

import asyncio
import json
import socket
import time
import uuid

import msgpack
import pytest
from emu_support import FakeServer, make_ctx
from kong_emulator.config.entities import Plugin, PluginInfo
from kong_emulator.plugin_servers.bridge import PluginRunner
from kong_emulator.plugin_servers.rpc import RpcClient, RPCLuaError, RPCTimeout, SocketPool, pack_request
from kong_emulator.testing import EmulatorProcess, PluginEntry
from proxy_support import PLUGINS_DIR, Upstream

RAW = PluginEntry("t-raw", PLUGINS_DIR / "t_raw.py", flags="")


def _lua_bytes(value) -> bytes:
    """A Lua string as it crossed the wire: msgpack str decoded with surrogateescape (bin stays bytes)."""
    assert isinstance(value, str), f"expected a msgpack str, got {type(value).__name__}"
    return value.encode("utf-8", "surrogateescape")


def _unpack(raw: bytes):
    return msgpack.unpackb(raw, raw=False, unicode_errors="surrogateescape", strict_map_key=False)


# -- 1. bytes: Kong packs Lua strings as msgpack str, byte for byte, with no UTF-8 check --------------------------


def test_lua_strings_go_out_as_msgpack_str_with_their_raw_bytes():
    # mp_rpc.lua:183 `c:send(mp_pack({0, msg_id, method, {...}}))`: lua-MessagePack packs every Lua string as str
    # (string_compat), whatever its bytes -- a header value "\xff\xfe" is `a2 ff fe`
    value = b"\xff\xfe".decode("utf-8", "surrogateescape")
    packed = pack_request(1, "plugin.Step", ({"EventId": 1, "Data": value},))
    assert b"\xa2\xff\xfe" in packed
    assert _unpack(packed)[3][0]["Data"] == value


def test_a_plugin_server_reply_with_raw_bytes_is_taken_as_is():
    # mp_rpc.lua:189-195: mp_unpacker decodes str into Lua strings without validating UTF-8
    async def main():
        async with FakeServer(lambda req: b"\x94\x01" + bytes([req[1]]) + b"\xc0\xa2\xff\xfe") as srv:
            return await RpcClient(SocketPool(srv.path)).call("plugin.X")

    assert _lua_bytes(asyncio.run(main())) == b"\xff\xfe"


ACCESS_CALLS = [
    ["kong.request.get_header", ["x-bin"]],
    ["kong.request.get_headers", []],
    ["kong.request.get_raw_query", []],
    ["kong.request.get_query", []],
    ["kong.request.get_path", []],
    ["kong.request.get_raw_path", []],
    ["kong.request.get_raw_body", []],
]


def _raw_request(port: int, head: bytes, body: bytes = b"") -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head + body)
        out = b""
        while chunk := sock.recv(65536):  # Connection: close -- read to EOF
            out += chunk
        return out


def test_request_bytes_reach_the_plugin_server_unchanged(tmp_path):
    """A header value, query, path and body with non-UTF-8 bytes, and the log's serialize: the plugin server gets
    Kong's bytes (kong/pdk/request.lua get_header/get_headers/get_raw_query/get_query/get_path/get_raw_path,
    plugin.lua:47-50 serialize as a cjson string), strings as msgpack str, the raw body as bin (mp_rpc.lua:69-83)."""
    out = tmp_path / "record.jsonl"
    config = {"access": json.dumps(ACCESS_CALLS), "log": json.dumps([["kong.log.serialize", []]]), "out": str(out)}
    up = Upstream().start()
    yml = (
        '_format_version: "3.0"\nservices:\n- name: s\n  url: ' + up.url + "/echo\n  routes:\n  - name: r\n"
        "    paths: [/raw]\n    plugins:\n    - name: t-raw\n      config: " + json.dumps(config) + "\n"
    )
    try:
        with EmulatorProcess(yml, [RAW], strict=True) as gw:
            body = b"\xff\x00\xfe"
            head = (
                b"POST /raw/%FF%C3%A9x?q=%FF&r=%E9 HTTP/1.1\r\nHost: h\r\nX-Bin: \xff\xfea\r\n"
                b"Content-Length: 3\r\nConnection: close\r\n\r\n"
            )
            reply = _raw_request(gw.port, head, body)
            assert reply.startswith(b"HTTP/1.1 200"), reply[:300]
            for _ in range(100):
                if out.exists() and len(out.read_text().splitlines()) == len(ACCESS_CALLS) + 1:
                    break
                time.sleep(0.05)  # the log phase runs after the response
            assert not gw.strict_failures(), gw.output()
    finally:
        up.stop()
    records = [json.loads(line) for line in out.read_text().splitlines()]
    data = {r["method"]: _unpack(bytes.fromhex(r["step"]))[3][0].get("Data") for r in records}
    assert _lua_bytes(data["kong.request.get_header"]) == b"\xff\xfea"
    assert _lua_bytes(data["kong.request.get_headers"]["x-bin"][0]) == b"\xff\xfea"
    assert _lua_bytes(data["kong.request.get_raw_query"]) == b"q=%FF&r=%E9"
    # ngx.req.get_uri_args unescapes to raw bytes (no UTF-8 check)
    assert [_lua_bytes(v) for v in data["kong.request.get_query"]["q"]] == [b"\xff"]
    assert [_lua_bytes(v) for v in data["kong.request.get_query"]["r"]] == [b"\xe9"]
    # kong/tools/uri.lua:78-90 normalize: percent-decodes unreserved and "other" bytes, byte for byte
    assert _lua_bytes(data["kong.request.get_path"]) == b"/raw/\xff\xc3\xa9x"
    assert _lua_bytes(data["kong.request.get_raw_path"]) == b"/raw/%FF%C3%A9x"
    assert data["kong.request.get_raw_body"] == b"\xff\x00\xfe"  # bin (fix_raw)
    serialized = _lua_bytes(data["kong.log.serialize"])
    assert b'"x-bin":"\xff\xfea"' in serialized  # cjson copies the bytes into the JSON text


# -- 2. read timeout: the connection goes back to the pool (mp_rpc.lua:195-198) ------------------------------------


def test_a_timed_out_connection_is_kept_alive_and_the_late_reply_breaks_the_next_call():
    """`reader()` fails on the read timeout, then `c:setkeepalive()` (mp_rpc.lua:196-198): the connection is pooled
    while the server still owes a reply. The next call takes it from the pool (LIFO), the late reply to the first
    msgid arrives and `assert(data[2] == msg_id, ...)` (mp_rpc.lua:208) is a Lua error."""

    async def main():
        async with FakeServer(lambda req: msgpack.packb([1, req[1], None, "r"])) as srv:
            srv.delay = lambda req: 0.25 if req[1] == 1 else 0
            pool = SocketPool(srv.path)
            rpc = RpcClient(pool, timeout=0.15)
            with pytest.raises(RPCTimeout):
                await rpc.call("plugin.HandleEvent", {"InstanceId": 0, "EventName": "access"})
            assert pool.idle == 1  # setkeepalive, not close
            rpc.timeout = 1.0
            with pytest.raises(RPCLuaError, match="unexpected RPC response ID from Go plugin server"):
                await rpc.call("plugin.HandleEvent", {"InstanceId": 0, "EventName": "access"})
            assert srv.connections == 1  # the second call went out on the same connection
            assert pool.idle == 0  # a Lua error never reaches setkeepalive: the connection is closed

    asyncio.run(main())


def test_the_late_reply_is_a_500_at_the_bridge():
    """The same over a whole event: the first request fails open after the timeout (mp_rpc.lua:318 kong.log.err),
    the next one on that worker meets the late reply -- a Lua error in access, Kong's 500."""

    async def main():
        async with FakeServer(lambda req: msgpack.packb([1, req[1], None, _answer(req)])) as srv:
            srv.delay = lambda req: 0.25 if req[2] == "plugin.HandleEvent" and req[1] == 2 else 0
            info = PluginInfo(name="p", version="0.1.0", priority=1, phases=("access",), schema={})
            runner = PluginRunner({"p": srv.path}, infos={"p": info}, reply_timeout=0.15)
            plugin = Plugin(id=str(uuid.uuid4()), name="p", config={})
            first = make_ctx()
            await runner.run_phase(plugin, "access", first)
            assert first.exit is None and ("err", "p", "timeout") in first.log_lines
            second = make_ctx()
            await runner.run_phase(plugin, "access", second)
            assert second.exit is not None and second.exit.status == 500
            await runner.close()

    asyncio.run(main())


def _answer(req):
    method = req[2]
    if method == "plugin.StartInstance":
        return {"Id": 7}
    if method == "plugin.HandleEvent":
        return {"EventId": 1, "Data": "ret"}
    return None


# -- 4. instances after a plugin-server restart (plugin.lua:201-224, init.lua:60-64) --------------------------------


class RestartingServer:
    """Answers like a plugin server that restarted: while `refuse` > 0 a HandleEvent gets "no plugin instance"
    (the new process knows no instance started before), then it serves again."""

    def __init__(self, refuse: int) -> None:
        self.refuse = refuse  # how many HandleEvents answer "no plugin instance"
        self.next_id = 0
        self.events = 0

    def __call__(self, req):
        method = req[2]
        if method == "plugin.StartInstance":
            self.next_id += 1
            return msgpack.packb([1, req[1], None, {"Id": self.next_id - 1}])
        if method == "plugin.HandleEvent":
            self.events += 1
            if self.refuse > 0:
                self.refuse -= 1
                return msgpack.packb([1, req[1], f"no plugin instance {req[3][0]['InstanceId']}", None])
            return msgpack.packb([1, req[1], None, {"EventId": self.events, "Data": "ret"}])
        return msgpack.packb([1, req[1], None, None])


def test_other_workers_forget_their_instances_only_when_the_worker_event_arrives():
    """reset_instance (plugin.lua:210-224) clears this worker's table at once and *posts* a worker event; every
    worker clears its own table when that event is delivered (init.lua:62-64), later. Until then another worker
    still holds an instance id that, on the restarted server, may name another route's instance."""

    async def main():
        server = RestartingServer(refuse=0)
        async with FakeServer(server) as srv:
            info = PluginInfo(name="p", version="0.1.0", priority=1, phases=("access",), schema={})
            runner = PluginRunner({"p": srv.path}, infos={"p": info}, workers=2)
            plugin = Plugin(id=str(uuid.uuid4()), name="p", config={})
            w0, w1 = runner.workers
            w0.event_delay = 0.3  # a slow broker: the window is wide enough to look at
            await w0.run_phase(plugin, "access", make_ctx())
            await w1.run_phase(plugin, "access", make_ctx())
            assert w1.instance_ids() == {plugin.id: 1}
            server.refuse = 1  # the server restarted: it knows neither instance
            await w0.run_phase(plugin, "access", make_ctx())
            assert w0.instance_ids() == {plugin.id: 2}  # reset here at once, started again
            assert w1.instance_ids() == {plugin.id: 1}  # the worker event is not delivered yet
            await asyncio.sleep(0.5)
            # delivered to every worker, the poster included (resty.events publishes to "all"): w0 forgets the
            # instance it has just started and will start yet another one
            assert w1.instance_ids() == {} and w0.instance_ids() == {}
            await runner.close()

    asyncio.run(main())


# -- 5. "no plugin instance": retried without a cap (mp_rpc.lua:312-316) --------------------------------------------


def test_no_plugin_instance_is_retried_until_the_server_answers():
    """`if str_find(err_lowered, "no plugin instance") then ... return self:handle_event(conf, phase)`: no cap."""

    async def main():
        server = RestartingServer(refuse=6)
        async with FakeServer(server) as srv:
            info = PluginInfo(name="p", version="0.1.0", priority=1, phases=("access",), schema={})
            runner = PluginRunner({"p": srv.path}, infos={"p": info})
            plugin = Plugin(id=str(uuid.uuid4()), name="p", config={})
            ctx = make_ctx()
            await runner.run_phase(plugin, "access", ctx)
            await runner.close()
            return server, ctx

    server, ctx = asyncio.run(main())
    assert server.events == 7
    assert [level for level, _, _ in ctx.log_lines] == ["warn"] * 6  # kong.log.warn(err) per retry, no err
