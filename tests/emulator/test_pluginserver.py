"""Plugin-server management as Kong 3.9+ does it (process.lua): query command, spawn, logs, respawn, stop."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import time
from types import SimpleNamespace

import pytest
from emu_support import PYTHON, SCRIPT, short_tmpdir
from kong_emulator.plugin_servers.pluginserver import (
    PluginServerError,
    PluginServerProcess,
    PluginServers,
    query_plugin_info,
    query_raw_info,
)

INFO = '{"Name":"%s","Version":"1.0.0","Priority":10,"Phases":["access"],"Schema":{"name":"%s","fields":[]}}'


def server_def(query_cmd=None, start_cmd=None, name="t-script", prefix=None):
    prefix = prefix or short_tmpdir()
    return SimpleNamespace(
        name=name, socket=os.path.join(prefix, "t-script.sock"), start_cmd=start_cmd, query_cmd=query_cmd
    )


def t_script(prefix: str) -> str:
    return f"{PYTHON} {SCRIPT} -p {prefix} --socket-name t-script.sock"


def ppid_of(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def test_query_accepts_a_list_and_keeps_only_the_first(caplog):
    two = "[" + INFO % ("first", "first") + "," + INFO % ("second", "second") + "]"
    with caplog.at_level(logging.WARNING):
        raw = asyncio.run(query_raw_info(server_def(f"printf '%s' '{two}'")))
    assert raw["Name"] == "first"
    assert "only the first plugin" in caplog.text and "second" in caplog.text


def test_query_accepts_protocol_and_plugins_map():
    dump = '{"Protocol":"MsgPack:1","Plugins":[' + INFO % ("p", "p") + "]}"
    assert asyncio.run(query_raw_info(server_def(f"printf '%s' '{dump}'")))["Name"] == "p"


def test_query_rejects_protobuf_and_bad_json():
    dump = '{"Protocol":"ProtoBuf:1","Plugins":[' + INFO % ("p", "p") + "]}"
    with pytest.raises(PluginServerError, match="ProtoBuf:1"):
        asyncio.run(query_raw_info(server_def(f"printf '%s' '{dump}'")))
    with pytest.raises(PluginServerError, match="failed decoding plugin info"):
        asyncio.run(query_raw_info(server_def("echo not-json")))
    with pytest.raises(PluginServerError, match="no info query"):
        asyncio.run(query_raw_info(server_def(None)))


def test_query_real_dedicated_server_dump_is_validated():
    info = asyncio.run(query_plugin_info(server_def(f"{PYTHON} {SCRIPT} --dump")))
    assert info.name == "t-script" and info.priority == 1000 and info.version == "0.1.0"
    assert set(info.phases) == {"rewrite", "access", "response", "log"}


def test_start_waits_for_socket_logs_prefixed_lines_and_is_our_child(caplog):
    prefix = short_tmpdir()
    proc = PluginServerProcess(server_def(start_cmd=t_script(prefix), prefix=prefix))

    async def main():
        with caplog.at_level(logging.INFO, logger="kong_emulator.pluginserver"):
            await proc.start()
            assert os.path.exists(proc.server.socket)
            assert ppid_of(proc.pid) == os.getpid()  # exec: no shell in between, kong-pdk's watchdog works
            for _ in range(100):
                if proc.lines:
                    break
                await asyncio.sleep(0.05)
            assert proc.lines and all(line.startswith(f"[t-script:{proc.pid}] ") for line in proc.lines)
            await proc.stop()
        assert proc.proc.returncode == -15  # SIGTERM

    try:
        asyncio.run(main())
    finally:
        shutil.rmtree(prefix, ignore_errors=True)


def test_dead_server_is_respawned_at_most_once_per_second():
    prefix = short_tmpdir()
    proc = PluginServerProcess(server_def(start_cmd=t_script(prefix), prefix=prefix))

    async def main():
        t0 = time.monotonic()  # no later than the first spawn
        await proc.start()
        first = proc.pid
        os.kill(first, 9)
        while proc.pid == first or proc.spawns < 2:
            await asyncio.sleep(0.02)
        # process.lua: next_spawn = last spawn + 1 s (measured from the spawn, not the kill: a loaded machine may
        # take over a second to get the first server ready, and then the respawn may rightly follow at once)
        assert time.monotonic() - t0 >= 1.0
        await proc.wait_ready()
        await proc.stop()

    try:
        asyncio.run(main())
    finally:
        shutil.rmtree(prefix, ignore_errors=True)


def test_exit_127_stops_respawning(caplog):
    proc = PluginServerProcess(server_def(start_cmd="/nonexistent/emu-plugin-server"), ready_timeout=5)

    async def main():
        with caplog.at_level(logging.ERROR, logger="kong_emulator.pluginserver"), pytest.raises(PluginServerError):
            await proc.start()
        await asyncio.sleep(1.2)
        assert proc.spawns == 1 and proc.gave_up
        await proc.stop()

    asyncio.run(main())
    assert 'exited with "command not found"' in caplog.text


def test_plugin_servers_query_start_sockets_and_stop():
    prefix = short_tmpdir()
    sdef = server_def(query_cmd=f"{PYTHON} {SCRIPT} --dump", start_cmd=t_script(prefix), prefix=prefix)
    servers = PluginServers([sdef])

    async def main():
        infos = await servers.query_all()
        assert list(infos) == ["t-script"]
        await servers.start_all()
        assert servers.sockets() == {"t-script": sdef.socket}
        pid = servers.processes["t-script"].pid
        await servers.stop_all()
        assert not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split()[2] == "Z"

    try:
        asyncio.run(main())
    finally:
        shutil.rmtree(prefix, ignore_errors=True)
