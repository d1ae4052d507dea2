"""The native serverless plugins in-process: the LuaJIT runtime, the PDK bridge, Kong's sandbox and schema."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest
from emu_support import make_ctx
from kong_emulator.config.declarative import BUNDLED_PLUGINS, load_declarative
from kong_emulator.config.entities import Plugin
from kong_emulator.config.errors import ConfigError
from kong_emulator.config.plugin_schema import normalize_config
from kong_emulator.native import NativeRunner, native_infos, sandbox_settings, with_native_infos
from kong_emulator.runloop.context import Headers, LogSnapshot, UpstreamRequest
from kong_emulator.runloop.plugins_iterator import plugins_for


class _External:
    """The bits of bridge.PluginRunner a NativeRunner uses, without plugin servers."""

    def __init__(self) -> None:
        from kong_emulator.pdk import PDK

        self.pdk = PDK()
        self.workers = [self]
        self.worker_id = 0
        self.calls: list = []

    def worker_for(self, ctx):
        ctx.worker_id = 0
        return self

    async def run_phase(self, plugin, phase, ctx):
        self.calls.append((plugin.name, phase))


def _plugin(name="post-function", **phases) -> Plugin:
    config = normalize_config(native_infos()[name], phases, "test")
    return Plugin(id=str(uuid.uuid4()), name=name, config=config)


def _ctx(headers=()):
    ctx = make_ctx(headers=list(headers))
    ctx.upstream = UpstreamRequest(method="GET", path="/p", raw_query="", headers=Headers())
    return ctx


@pytest.fixture
def runner():
    return NativeRunner(_External())


def run(runner, plugin, phase, ctx):
    asyncio.run(runner.run_phase(plugin, phase, ctx))
    return ctx


# -- infos, schema -------------------------------------------------------------------------------------------------


def test_infos_carry_kongs_priorities_and_order_around_python_plugins():
    infos = native_infos()
    assert infos["pre-function"].priority == 1000000 and infos["post-function"].priority == -1000
    assert {"rewrite", "access", "response", "log"} <= set(infos["post-function"].phases)
    assert "pre-function" in BUNDLED_PLUGINS and "post-function" in BUNDLED_PLUGINS


def test_native_plugins_are_validated_and_not_reported_unsupported():
    yml = """
_format_version: "3.0"
plugins:
  - name: post-function
    config:
      access: ["return function() end"]
  - name: request-termination
"""
    infos = with_native_infos({})
    conf = load_declarative(yml, infos, {"bundled"}, set(BUNDLED_PLUGINS))
    assert conf.unsupported_plugins == ["request-termination"]
    (plugin,) = conf.plugins
    assert plugin.config["access"] == ["return function() end"] and plugin.config["log"] == []
    assert plugins_for(conf, None, None, None, "access", infos) == [plugin]


@pytest.mark.parametrize(
    ("config", "field", "reason"),
    [
        ({"access": ["local x = ("]}, "config.access[0]", 'error parsing post-function: [string "local x = ("]:1:'),
        ({"access": "kong.log.err('x')"}, "config.access", "expected an array"),
        ({"log": [42]}, "config.log[0]", "expected a string"),
        ({"functions": ["x()"]}, "config.functions", "unknown field"),
    ],
)
def test_schema_errors_name_the_plugin_and_field(config, field, reason):
    with pytest.raises(ConfigError) as err:
        normalize_config(native_infos()["post-function"], config, "in 'plugins' entity 'post-function' (plugins[0])")
    assert err.value.field == field
    assert reason in err.value.reason
    assert str(err.value).startswith("in 'plugins' entity 'post-function' (plugins[0]): field ")


def test_a_config_without_code_is_refused_by_the_entity_check():
    yml = '_format_version: "3.0"\nplugins:\n  - name: pre-function\n    config: {access: []}\n'
    with pytest.raises(ConfigError) as err:
        load_declarative(yml, with_native_infos({}), {"bundled"}, set(BUNDLED_PLUGINS))
    assert str(err.value) == (
        "in 'plugins' entity 'pre-function' (plugins[0]): at least one of these fields must be non-empty: "
        "'config.certificate', 'config.rewrite', 'config.access', 'config.header_filter', 'config.body_filter', "
        "'config.log'"
    )


def test_sandbox_settings_from_kong_conf():
    assert sandbox_settings({}) == ("sandbox", ())
    assert sandbox_settings({"untrusted_lua": "on", "untrusted_lua_sandbox_requires": "cjson, cjson.safe"}) == (
        "on",
        ("cjson", "cjson.safe"),
    )
    with pytest.raises(ConfigError):
        sandbox_settings({"untrusted_lua": "maybe"})


# -- handler semantics (kong/plugins/pre-function/_handler.lua) ------------------------------------------------------


def test_a_returned_function_runs_per_request_after_the_chunk_ran_once(runner):
    plugin = _plugin(
        access=[
            "local n = 0\n"
            "kong.ctx.shared.init = (kong.ctx.shared.init or 0) + 1\n"
            "return function() n = n + 1; kong.ctx.shared.n = n end",
            "kong.ctx.shared.plain = (kong.ctx.shared.plain or 0) + 1",
        ]
    )
    first = run(runner, plugin, "access", _ctx())
    second = run(runner, plugin, "access", _ctx())
    assert first.shared == {"init": 1, "n": 1, "plain": 1}
    assert second.shared == {"n": 2, "plain": 1}  # the chunk's top level ran once; the upvalue lives on


def test_exit_stops_the_chunk_and_is_the_response(runner):
    plugin = _plugin(
        access=[
            "kong.response.exit(418, { message = 'teapot' }, { ['X-A'] = 'b' })\nkong.ctx.shared.after = true",
            "kong.ctx.shared.second_chunk = true",
        ]
    )
    ctx = run(runner, plugin, "access", _ctx())
    assert ctx.exit.status == 418 and json.loads(ctx.exit.body) == {"message": "teapot"}
    assert ctx.exit.headers.get("X-A") == "b"
    assert "after" not in ctx.shared and "second_chunk" not in ctx.shared


def test_a_lua_error_is_kongs_500_and_logged(runner):
    plugin = _plugin(access=["local t = nil\nreturn t.x"])
    ctx = run(runner, plugin, "access", _ctx())
    assert ctx.exit.status == 500
    # kong/init.lua:407-410, 506-508: the delayed 500 is kong.response.error's JSON template, with the request id
    assert json.loads(ctx.exit.body) == {"message": "An unexpected error occurred", "request_id": "rid-1"}
    # kong-lua-sandbox.lua:162 `error(t[2])` puts its own position in front of the chunk's error
    sandbox_pos = "/usr/local/share/lua/5.1/kong/tools/kong-lua-sandbox.lua:162: "
    error = "[string \"local t = nil...\"]:2: attempt to index local 't' (a nil value)"
    assert ctx.log_lines == [("err", "post-function", sandbox_pos + error)]


def test_pdk_errors_are_lua_errors_catchable_with_pcall(runner):
    plugin = _plugin(
        access=[
            "local ok, err = pcall(kong.service.request.set_header, 'X-A', {})\n"
            "kong.ctx.shared.ok, kong.ctx.shared.err = ok, err\n"
            "kong.ctx.shared.missing = kong.request.get_header('nope') == nil"
        ]
    )
    ctx = run(runner, plugin, "access", _ctx())
    assert ctx.exit is None
    assert ctx.shared["ok"] is False and "invalid header value" in ctx.shared["err"]
    assert ctx.shared["missing"] is True


def test_pdk_values_have_luas_shapes(runner):
    plugin = _plugin(
        access=[
            "local h = kong.request.get_headers()\n"
            "kong.ctx.shared.one = h['x-one']\n"
            "kong.ctx.shared.two = h['x-two']\n"
            "kong.ctx.shared.method = ngx.var.request_method\n"
            "kong.ctx.shared.uri = ngx.var.uri\n"
            "kong.ctx.shared.phase = ngx.get_phase()\n"
            "kong.ctx.shared.route = kong.router.get_route() == nil\n"
            "kong.service.request.set_header('X-From-Lua', 'yes')\n"
            "ngx.log(ngx.WARN, 'warned ', 42)\n"
            "kong.log.info('count=', 3, ' ok=', true)"
        ]
    )
    ctx = run(runner, plugin, "access", _ctx([("X-One", "1"), ("X-Two", "a"), ("X-Two", "b")]))
    assert ctx.shared == {"one": "1", "two": ["a", "b"], "method": "GET", "uri": "/p", "phase": "access", "route": True}
    assert ctx.upstream.headers.get("X-From-Lua") == "yes"
    assert ("warn", "post-function", "warned 42") in ctx.log_lines
    assert ("info", "post-function", "count=3 ok=true") in ctx.log_lines


# -- kong.ctx.shared: one table for Python and Lua plugins --------------------------------------------------------


def test_ctx_shared_is_shared_with_python_plugins_both_ways(runner):
    plugin = _plugin(
        access=[
            "local id = kong.ctx.shared.sv_identity\n"
            "kong.ctx.shared.seen = type(id) == 'table' and id.authenticated == true and id.roles[2]\n"
            "id.checked = true\n"
            "kong.ctx.shared.list = { 'a', 'b' }\n"
            "kong.ctx.shared.fn = function() end"
        ]
    )
    ctx = _ctx()
    ctx.shared["sv_identity"] = {"authenticated": True, "roles": ["parent", "admin"]}
    ctx.shared["gone"] = 1
    run(runner, plugin, "access", ctx)
    assert ctx.shared["seen"] == "admin"
    assert ctx.shared["sv_identity"]["checked"] is True  # a nested change made in Lua reaches Python
    assert ctx.shared["list"] == ["a", "b"] and "fn" not in ctx.shared  # a function has no Python form
    # a Python plugin replaces and deletes values between two Lua events
    ctx.shared["sv_identity"] = {"authenticated": False}
    del ctx.shared["gone"]
    probe = _plugin(
        access=[
            "kong.ctx.shared.after = tostring(kong.ctx.shared.sv_identity.authenticated)"
            " .. tostring(kong.ctx.shared.gone) .. type(kong.ctx.shared.fn)"
        ]
    )
    run(runner, probe, "access", ctx)
    assert ctx.shared["after"] == "falsenilfunction"  # the Lua-only function stayed in the Lua table


def test_log_phase_reads_the_snapshot(runner):
    plugin = _plugin(
        log=[
            "kong.ctx.shared.logged = kong.response.get_status() .. ' ' .. kong.request.get_method() .. ' '"
            " .. kong.log.serialize().response.status .. ' ' .. tostring(kong.ctx.shared.sv_identity.sub)"
        ]
    )
    ctx = _ctx()
    ctx.shared["sv_identity"] = {"sub": "u-9"}
    ctx.snapshot = LogSnapshot.take(ctx, {"response": {"status": 503}}, Headers(), 503)
    ctx.phase = "log"
    run(runner, plugin, "log", ctx)
    assert ctx.exit is None and ctx.log_lines == []
    assert ctx.shared["logged"] == "503 GET 503 u-9"


def test_header_and_body_filter_run_in_the_response_step(runner):
    plugin = _plugin(
        header_filter=["kong.response.set_header('X-Status', kong.response.get_status())"],
        body_filter=["ngx.arg[1] = string.upper(ngx.arg[1])"],
    )
    ctx = _ctx()
    ctx.response.status, ctx.upstream_body = 201, b'{"ok":true}'
    run(runner, plugin, "response", ctx)
    assert ctx.response.headers.get("X-Status") == "201"
    assert ctx.response.body == b'{"OK":TRUE}'


def test_other_plugins_go_to_the_external_runner(runner):
    ctx = _ctx()
    asyncio.run(runner.run_phase(Plugin(id="x", name="sv-jwt", config={}), "access", ctx))
    assert runner.external.calls == [("sv-jwt", "access")]


# -- the sandbox (kong/tools/sandbox) ----------------------------------------------------------------------------


def test_the_sandbox_has_kongs_globals_only(runner):
    plugin = _plugin(
        access=[
            "kong.ctx.shared.g = table.concat({ type(os.execute), type(io), type(setmetatable),"
            " type(load), type(debug), type(python), type(string.upper), type(math.floor), type(cjson),"
            " tostring(_G == _G) }, ',')\n"
            "kong.ctx.shared.req = select(2, pcall(require, 'cjson'))\n"
            "kong.ctx.shared.mod = select(2, pcall(function() string.shout = string.upper end))"
        ]
    )
    ctx = run(runner, plugin, "access", _ctx())
    assert ctx.shared["g"] == "nil,nil,nil,nil,nil,nil,function,function,nil,true"
    assert ctx.shared["req"] == "require 'cjson' not allowed within sandbox"
    assert ctx.shared["mod"].endswith("Can not modify string.shout. Protected by the sandbox.")  # Kong 3.9.1


def test_allowed_requires_and_untrusted_lua_off():
    allowed = NativeRunner(_External(), sandbox_requires=("cjson",))
    plugin = _plugin(access=["local cjson = require 'cjson'\nkong.ctx.shared.j = cjson.encode({ a = { 1, 2 } })"])
    ctx = run(allowed, plugin, "access", _ctx())
    assert ctx.shared["j"] == '{"a":[1,2]}'
    off = NativeRunner(_External(), untrusted_lua="off")
    ctx = run(off, _plugin(access=["kong.ctx.shared.x = 1"]), "access", _ctx())
    assert ctx.exit.status == 500 and "x" not in ctx.shared
    assert "'untrusted_lua' config option is set to 'off'" in ctx.log_lines[0][2]
