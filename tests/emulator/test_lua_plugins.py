"""Custom Lua plugins (kong/plugins/<name>/{handler,schema}.lua) in the emulator's LuaJIT: loading with Kong's
messages, schema validation, phases and priority, and the PDK they share with Python plugins (kong.ctx.shared)."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
from emu_support import External, make_ctx
from kong_emulator.config.entities import Plugin
from kong_emulator.config.errors import ConfigError
from kong_emulator.config.plugin_schema import normalize_config
from kong_emulator.native import NativeRunner
from kong_emulator.native.lua_plugins import LuaPluginInfo, find_handler, load_infos, package_path
from kong_emulator.runloop.context import Headers, UpstreamRequest

SCHEMA = """
local typedefs = require "kong.db.schema.typedefs"
return { name = "{name}", fields = {
  { consumer = typedefs.no_consumer },
  { protocols = typedefs.protocols_http },
  { config = { type = "record", fields = {
      { greeting = { type = "string", required = true, one_of = { "hi", "hello" } } },
      { times = { type = "integer", default = 1, between = { 1, 3 } } },
  } } },
} }
"""
HANDLER = """
local H = { PRIORITY = {priority}, VERSION = "{version}" }
local calls = 0
function H:access(conf)
  calls = calls + 1
  kong.ctx.shared.seen = conf.greeting .. ":" .. conf.times .. ":" .. calls
  if kong.request.get_header("X-Stop") then
    return kong.response.exit(418, "stopped", { ["X-By"] = "lua" })
  end
  if kong.request.get_header("X-Crash") then
    error("boom")
  end
  kong.service.request.set_header("X-From-Lua", kong.ctx.shared.from_python or "none")
end
function H:header_filter(conf)
  kong.response.set_header("X-Greeting", conf.greeting)
end
return H
"""


def write_plugin(root: Path, name: str = "hello", priority: str = "900", version: str = "1.2.3", schema: str = SCHEMA):
    d = root / "kong" / "plugins" / name
    d.mkdir(parents=True, exist_ok=True)
    (d / "handler.lua").write_text(HANDLER.replace("{priority}", priority).replace("{version}", version))
    (d / "schema.lua").write_text(schema.replace("{name}", name))
    return root


def path_for(root: Path) -> str:
    return package_path({"lua_package_path": f"{root}/?.lua;;"}, str(root))


def test_a_plugin_in_kongs_layout_loads_with_priority_version_phases_and_schema(tmp_path):
    root = write_plugin(tmp_path)
    assert find_handler("hello", path_for(root)) == root / "kong/plugins/hello/handler.lua"
    info = load_infos(["bundled", "hello", "sv-jwt"], path_for(root))["hello"]
    assert isinstance(info, LuaPluginInfo)
    assert (info.priority, info.version, info.phases) == (900, "1.2.3", ("access", "header_filter"))
    assert normalize_config(info, {"greeting": "hi"}, "x") == {"greeting": "hi", "times": 1}


def test_names_without_a_handler_module_are_left_to_plugin_servers(tmp_path):
    assert load_infos(["sv-jwt", "bundled"], path_for(tmp_path)) == {}


@pytest.mark.parametrize(
    ("priority", "version", "message"),
    [
        ("1.5", "1.0.0", 'Plugin "hello" cannot be loaded because its PRIORITY field is not a valid integer number'),
        ('"high"', "1.0.0", "PRIORITY field is not a valid integer number"),
        ("10", "one", 'its VERSION field does not follow the "x.y.z" format'),
    ],
)
def test_bad_priority_or_version_is_refused_with_kongs_message(tmp_path, priority, version, message):
    root = write_plugin(tmp_path, priority=priority, version=version)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        load_infos(["hello"], path_for(root))


def test_a_handler_that_does_not_compile_is_not_installed(tmp_path):
    root = write_plugin(tmp_path)
    (root / "kong/plugins/hello/handler.lua").write_text("return {")
    with pytest.raises(ConfigError, match="hello plugin is enabled but not installed"):
        load_infos(["hello"], path_for(root))


def test_a_schema_without_a_config_record_is_refused(tmp_path):
    root = write_plugin(tmp_path, schema='return { name = "{name}", fields = { { other = { type = "string" } } } }')
    with pytest.raises(ConfigError, match="unknown field"):
        load_infos(["hello"], path_for(root))


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({}, "field 'config.greeting': required field missing"),
        ({"greeting": "yo"}, "field 'config.greeting': expected one of: hi, hello"),
        ({"greeting": "hi", "times": 9}, "field 'config.times': value should be between 1 and 3"),
        ({"greeting": "hi", "x": 1}, "field 'config.x': unknown field"),
    ],
)
def test_configs_are_validated_with_kongs_messages(tmp_path, config, message):
    info = load_infos(["hello"], path_for(write_plugin(tmp_path)))["hello"]
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        normalize_config(info, config, "plugin hello")


def _setup(tmp_path):
    info = load_infos(["hello"], path_for(write_plugin(tmp_path)))["hello"]
    runner = NativeRunner(External(), infos={"hello": info})
    plugin = Plugin(id=str(uuid.uuid4()), name="hello", config=normalize_config(info, {"greeting": "hello"}, "t"))
    return runner, plugin


def _ctx(headers=()):
    ctx = make_ctx(headers=list(headers))
    ctx.upstream = UpstreamRequest(method="GET", path="/p", raw_query="", headers=Headers())
    return ctx


def test_handler_phases_run_with_the_config_and_share_kong_ctx_shared_with_python(tmp_path):
    runner, plugin = _setup(tmp_path)
    ctx = _ctx()
    ctx.shared["from_python"] = "py"  # what a Python plugin set over the protocol
    asyncio.run(runner.run_phase(plugin, "access", ctx))
    assert ctx.exit is None
    assert ctx.shared["seen"] == "hello:1:1"  # visible to the next Python plugin
    assert ctx.upstream.headers.get("X-From-Lua") == "py"
    asyncio.run(runner.run_phase(plugin, "header_filter", ctx))
    assert ctx.response.headers.get("X-Greeting") == "hello"
    second = _ctx()
    asyncio.run(runner.run_phase(plugin, "access", second))
    assert second.shared["seen"] == "hello:1:2"  # module upvalues live per worker VM, as in Kong


def test_exit_ends_the_phase_and_a_lua_error_is_kongs_500(tmp_path):
    runner, plugin = _setup(tmp_path)
    ctx = _ctx([("X-Stop", "1")])
    asyncio.run(runner.run_phase(plugin, "access", ctx))
    assert ctx.exit.status == 418 and ctx.exit.body == b"stopped"
    ctx = _ctx([("X-Crash", "1")])
    asyncio.run(runner.run_phase(plugin, "access", ctx))
    assert ctx.exit.status == 500
    assert any("boom" in line[2] for line in ctx.log_lines)


def test_repo_kong_conf_enables_sv_edge_from_the_lua_path():
    import sys

    from kong_emulator.config import conf as conf_mod

    repo = Path(__file__).resolve().parents[2]
    sys.path.insert(0, str(repo / "scripts"))
    from run_stack import local_environ  # the image paths kong.conf names, relocated to this checkout

    conf = conf_mod.load_kong_conf(str(repo / "kong.conf"), local_environ(repo, "/tmp/sv-prefix"))
    assert "sv-edge" in conf.plugins
    info = load_infos(conf.plugins, package_path(conf.raw, conf.prefix))["sv-edge"]
    assert info.priority == 800
    assert set(info.phases) == {"rewrite", "access", "header_filter", "body_filter", "log"}
