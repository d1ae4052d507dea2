"""§1.15 item 1 (framing, pool, msgids) and the RPC client's error paths, against fake and real servers."""

from __future__ import annotations

import asyncio
import os

import msgpack
import pytest
from emu_support import FakeServer, new_server, remove_server, short_tmpdir
from kong_emulator.plugin_servers.rpc import Bin, RpcClient, RPCError, RPCLuaError, RPCTimeout, SocketPool, pack_request


def ok(req, result="r"):
    return msgpack.packb([1, req[1], None, result])


def test_1_framing_request_array_msgid_from_1_and_string_compat():
    async def main():
        async with FakeServer(ok) as srv:
            rpc = RpcClient(SocketPool(srv.path))
            assert await rpc.call("plugin.HandleEvent", {"InstanceId": 0, "EventName": "access"}) == "r"
            assert await rpc.call("plugin.CloseInstance", 7) == "r"
        assert srv.requests[0][1] == [0, 1, "plugin.HandleEvent", [{"InstanceId": 0, "EventName": "access"}]]
        assert srv.requests[1][1] == [0, 2, "plugin.CloseInstance", [7]]  # a bare int param, still in an array

    asyncio.run(main())


def test_1_strings_pack_like_lua_messagepack_string_compat():
    packed = pack_request(1, "plugin.X", ("x" * 40,))
    assert b"\xda\x00\x28" in packed  # str16 for 40 bytes: string_compat has no str8
    assert b"\xd9" not in packed and b"\xc4" not in packed  # no str8, no bin


def test_1_raw_bodies_go_as_bin_and_nil_is_absent():
    packed = pack_request(3, "plugin.Step", ({"EventId": 1, "Data": Bin(b"\xff")},))
    assert msgpack.unpackb(packed, raw=False) == [0, 3, "plugin.Step", [{"EventId": 1, "Data": b"\xff"}]]
    assert b"\xc4\x01\xff" in packed  # bin8


def test_1_pool_reuses_connection_one_call_in_flight():
    async def main():
        async with FakeServer(ok) as srv:
            pool = SocketPool(srv.path)
            rpc = RpcClient(pool)
            for _ in range(5):
                await rpc.call("plugin.GetStatus")
            assert pool.opened == 1 and pool.idle == 1
            await asyncio.gather(*(RpcClient(pool).call("plugin.GetStatus") for _ in range(4)))
            assert pool.opened == 4  # concurrent calls never share a connection
        assert srv.connections == 4

    asyncio.run(main())


def test_1_fresh_connection_sometimes():
    async def main():
        async with FakeServer(ok) as srv:
            pool = SocketPool(srv.path, fresh_every=2)
            rpc = RpcClient(pool)
            for _ in range(4):
                await rpc.call("plugin.GetStatus")
            assert pool.opened == 3  # call 1 opened, calls 2 and 4 forced new ones, call 3 reused
            assert [r[1][1] for r in srv.requests] == [1, 2, 3, 4]  # one msgid sequence across connections

    asyncio.run(main())


def test_1_pool_drops_idle_connection_closed_by_peer():
    async def main():
        async with FakeServer(ok) as srv:
            srv.close_after_reply = True
            pool = SocketPool(srv.path)
            rpc = RpcClient(pool)
            assert await rpc.call("plugin.A") == "r"
            await asyncio.sleep(0.05)  # the peer's close reaches the idle pooled connection
            assert await rpc.call("plugin.B") == "r"
            assert pool.opened == 2

    asyncio.run(main())


def test_1_notification_handled_before_response():
    seen = []

    def reply(req):
        return msgpack.packb([2, "serverPid", 4242]) + ok(req)

    async def main():
        async with FakeServer(reply) as srv:
            rpc = RpcClient(SocketPool(srv.path), on_notification=lambda label, args: seen.append((label, args)))
            assert await rpc.call("plugin.X") == "r"

    asyncio.run(main())
    assert seen == [("serverPid", 4242)]


def test_1_msgid_mismatch_is_a_lua_error():
    async def main():
        async with FakeServer(lambda req: msgpack.packb([1, req[1] + 5, None, "r"])) as srv:
            with pytest.raises(RPCLuaError, match="unexpected RPC response ID"):
                await RpcClient(SocketPool(srv.path)).call("plugin.X")

    asyncio.run(main())


def test_1_error_reply_is_nil_err():
    async def main():
        async with FakeServer(lambda req: msgpack.packb([1, req[1], "boom", None])) as srv:
            with pytest.raises(RPCError, match=r"^boom$"):
                await RpcClient(SocketPool(srv.path)).call("plugin.X")

    asyncio.run(main())


def test_1_clean_close_is_no_data():
    async def main():
        async with FakeServer(lambda req: None) as srv:
            with pytest.raises(RPCError, match=r"^no data$"):
                await RpcClient(SocketPool(srv.path)).call("plugin.X")

    asyncio.run(main())


def test_1_missing_bytes_when_closed_mid_object():
    async def main():
        path = os.path.join(short_tmpdir(), "half.sock")

        async def handle(reader, writer):
            await reader.read(4096)
            writer.write(msgpack.packb([1, 1, None, "abcdef"])[:4])
            await writer.drain()
            writer.close()

        server = await asyncio.start_unix_server(handle, path)
        with pytest.raises(RPCLuaError, match="missing bytes"):
            await RpcClient(SocketPool(path)).call("plugin.X")
        server.close()

    asyncio.run(main())


def test_1_connect_failure_is_kong_error_text():
    async def main():
        with pytest.raises(RPCError, match="no such file or directory"):
            await RpcClient(SocketPool("/tmp/emu-does-not-exist.sock")).call("plugin.X")

    asyncio.run(main())


def test_8_reply_timeout_configurable():
    async def main():
        async with FakeServer(lambda req: b"") as srv:  # never answers
            rpc = RpcClient(SocketPool(srv.path), timeout=0.1)
            with pytest.raises(RPCTimeout, match=r"^timeout$"):
                await rpc.call("plugin.X")

    asyncio.run(main())


def test_1_real_server_unknown_method_and_namespace_errors():
    server = new_server()
    try:

        async def main():
            rpc = RpcClient(SocketPool(server.socket))
            with pytest.raises(RPCError, match="'PluginServer' object has no attribute 'bogus'"):
                await rpc.call("plugin.Bogus")
            with pytest.raises(RPCError, match="RPC for other is not supported"):
                await rpc.call("other.Thing")
            status = await rpc.call("plugin.GetStatus")
            assert "t-script" in status["Plugins"]
            assert rpc.msg_id == 3

        asyncio.run(main())
    finally:
        remove_server(server)
