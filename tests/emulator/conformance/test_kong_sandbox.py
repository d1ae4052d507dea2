"""Kong 3.9.1 kong/tools/sandbox.lua + kong/tools/kong-lua-sandbox.lua (untrusted_lua = sandbox), as the
pre-/post-function plugins see it (kong/plugins/pre-function/_handler.lua:16-19, 31). Expectations from
spec/01-unit/20-sandbox_spec.lua where it has one."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from emu_support import make_ctx
from kong_emulator.config.entities import Plugin
from kong_emulator.config.plugin_schema import normalize_config
from kong_emulator.native import NativeRunner, native_infos
from kong_emulator.runloop.context import Headers, UpstreamRequest


class _External:
    def __init__(self) -> None:
        from kong_emulator.pdk import PDK

        self.pdk = PDK()
        self.workers = [self]
        self.worker_id = 0

    def worker_for(self, ctx):
        ctx.worker_id = 0
        return self

    async def run_phase(self, plugin, phase, ctx):
        return None


def _eval(expression: str, requires: tuple[str, ...] = ()) -> str:
    """`kong.ctx.shared.r` = tostring of `expression`'s pcall result, or the error message."""
    code = f"local ok, v = pcall(function() return {expression} end)\nkong.ctx.shared.r = tostring(v)"
    config = normalize_config(native_infos()["pre-function"], {"access": [code]}, "test")
    plugin = Plugin(id=str(uuid.uuid4()), name="pre-function", config=config)
    ctx = make_ctx()
    ctx.upstream = UpstreamRequest(method="GET", path="/p", raw_query="", headers=Headers())
    asyncio.run(NativeRunner(_External(), sandbox_requires=requires).run_phase(plugin, "access", ctx))
    assert ctx.exit is None, ctx.log_lines
    return ctx.shared["r"]


# kong-lua-sandbox.lua:59-80 is the whole base environment; what it does not name is nil inside the sandbox
@pytest.mark.parametrize(
    ("expression", "error"),
    [
        ("print('x')", "attempt to call global 'print' (a nil value)"),
        ("bit.band(1, 3)", "attempt to index global 'bit' (a nil value)"),
        ("table.unpack({1})", "attempt to call field 'unpack' (a nil value)"),
        ("table.pack(1)", "attempt to call field 'pack' (a nil value)"),
        ("table.new(1, 0)", "attempt to call field 'new' (a nil value)"),
        ("table.clear({})", "attempt to call field 'clear' (a nil value)"),
        ("table.clone({})", "attempt to call field 'clone' (a nil value)"),
        ("jit.version", "attempt to index global 'jit' (a nil value)"),
        ("io.type(1)", "attempt to index global 'io' (a nil value)"),
    ],
)
def test_what_kong_391_does_not_put_in_the_sandbox_is_nil(expression, error):
    assert _eval(expression).endswith(error)


@pytest.mark.parametrize(
    ("expression", "value"),
    [
        ("string.rep('a', 3)", "aaa"),  # 20-sandbox_spec.lua:240-243
        ("('a'):rep(3)", "aaa"),
        ("table.concat({1, 2}, ',') .. table.maxn({1, 2})", "1,22"),  # kong-lua-sandbox.lua:79
        ("unpack({7})", "7"),  # kong-lua-sandbox.lua:62
        ("math.floor(2.5) .. type(os.time) .. type(os.execute)", "2functionnil"),  # :67-73
        ("_G == _G._G", "true"),  # :147 env._G = env
        ("type(kong) .. type(ngx)", "tabletable"),  # pre-function/_handler.lua:19 env = { kong, ngx }
    ],
)
def test_what_the_sandbox_has(expression, value):
    assert _eval(expression) == value


def test_protected_modules_cannot_be_modified_with_kongs_391_message():
    # kong-lua-sandbox.lua:91-102 protect_module: 'Can not modify <module>.<attr>. Protected by the sandbox.'
    assert _eval("(function() string.shout = string.upper end)()").endswith(
        "Can not modify string.shout. Protected by the sandbox."
    )


def test_require_outside_untrusted_lua_sandbox_requires_is_refused():
    # sandbox.lua:77-80; 20-sandbox_spec.lua:302-307
    assert _eval("require('cjson')").endswith("require 'cjson' not allowed within sandbox")
    assert _eval("require('cjson').encode({1})", requires=("cjson",)) == "[1]"
