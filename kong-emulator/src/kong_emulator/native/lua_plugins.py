"""Custom Lua plugins in Kong's plugin layout (``kong/plugins/<name>/{handler,schema}.lua``), run in the LuaJIT of
`runtime.LuaState` with the same ``kong``/``ngx`` PDK that serverless chunks get.

Kong 3.9.1 sources mirrored here:

* Loading: `kong/db/dao/plugins.lua:158-209` ``load_plugin_handler``: ``require "kong.plugins.<name>.handler"``
  through ``lua_package_path`` first (`kong/templates/kong_defaults.lua:195`, default ``./?.lua;./?/init.lua;``,
  `kong/templates/nginx_kong.lua:6` appends ``;;``), a plugin server only when that module does not exist
  (plugins.lua:172); ``PRIORITY`` must be an integer ("cannot be loaded because its PRIORITY field is not a valid
  integer number"), ``VERSION`` ``x.y.z`` (plugins.lua:184-197); ``response`` excludes the filter phases
  (plugins.lua:200-206). The handler's phases are the methods it implements (plugins.lua:123 ``implements``).
* Schema: `kong/db/schema/plugin_loader.lua:16-37` requires ``kong.plugins.<name>.schema`` and validates it against
  the metaschema (`kong/db/schema/metaschema.lua:998` ``MetaSubSchema``: ``name``, ``fields``, a ``config``
  record); the emulator checks the same shape with `plugin_schema.validate_schema` and normalises every configured
  instance with `plugin_schema.normalize_config` (Kong's messages). ``kong.db.schema.typedefs`` is provided with
  the entries plugins use in their schemas (`TYPEDEFS` below; a missing one is a load error naming it).
* Running: `kong/runloop/plugins_iterator.lua`: ``handler[phase](handler, conf)`` with the processed config, in
  priority order; ``rewrite`` for global instances only (the emulator's `plugins_iterator` already does both).
  A Lua error ends like any Lua plugin's (`serverless.Serverless._lua_error`: 500 before the response, a log line
  after it).

Unlike a serverless chunk, plugin code is trusted: it runs in ``_G`` (no sandbox) with ``require`` over
``lua_package_path``, ``cjson``/``cjson.safe`` (the emulator's), and ``kong``/``ngx`` as globals. Files are read
with Lua's own ``io`` (plugins may read files installed next to them, as in Kong).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kong_emulator.config.entities import Plugin, PluginInfo
from kong_emulator.config.errors import ConfigError
from kong_emulator.config.plugin_schema import validate_plugin_info

log = logging.getLogger("kong_emulator")

DEFAULT_PACKAGE_PATH = "./?.lua;./?/init.lua;"  # kong/templates/kong_defaults.lua:195
LUA_PHASES = ("certificate", "rewrite", "access", "response", "header_filter", "body_filter", "log")

# The Lua side: installs the globals and modules a Kong plugin expects, then loads and binds plugins.
LOADER = rb"""
local kong, ngx, path, cjson = ...
_G.kong, _G.ngx = kong, ngx
package.path = path .. ";" .. package.path
package.loaded["cjson"], package.loaded["cjson.safe"] = cjson, cjson
local null = ngx.null
-- kong/db/schema/typedefs.lua: the entries plugin schemas use (same definitions)
local PROTOCOLS_HTTP = { "http", "https", "grpc", "grpcs", "ws", "wss" }
local typedefs = {
  no_consumer = { type = "foreign", reference = "consumers", eq = null },
  no_route = { type = "foreign", reference = "routes", eq = null },
  no_service = { type = "foreign", reference = "services", eq = null },
  no_consumer_group = { type = "foreign", reference = "consumer_groups", eq = null },
  protocols_http = { type = "set", required = true, default = PROTOCOLS_HTTP,
                     elements = { type = "string", one_of = PROTOCOLS_HTTP } },
}
setmetatable(typedefs, { __index = function(_, k)
  error("kong-emulator: typedefs." .. tostring(k) .. " is not provided", 2)
end })
package.loaded["kong.db.schema.typedefs"] = typedefs
package.loaded["kong.meta"] = { version = kong.version, _VERSION = kong.version }

local M = {}
local PHASES = { "certificate", "rewrite", "access", "response", "header_filter", "body_filter", "log" }

local function exists(modname)
  return package.searchpath(modname, package.path) ~= nil
end

function M.exists(name)
  return exists("kong.plugins." .. name .. ".handler")
end

-- kong/db/dao/plugins.lua load_plugin_handler + plugin_loader.load_subschema
function M.load(name)
  local ok, handler = pcall(require, "kong.plugins." .. name .. ".handler")
  if not ok then
    return nil, tostring(handler)
  end
  if type(handler) ~= "table" then
    return nil, "handler of plugin '" .. name .. "' is not a table"
  end
  local sok, schema = pcall(require, "kong.plugins." .. name .. ".schema")
  if not sok then
    return nil, "error loading plugin schemas: on plugin '" .. name .. "': " .. tostring(schema)
  end
  local phases = {}
  for _, p in ipairs(PHASES) do
    if type(handler[p]) == "function" then phases[#phases + 1] = p end
  end
  return { handler = handler, schema = schema, phases = phases,
           priority = handler.PRIORITY, version = handler.VERSION }
end

function M.bind(handler, phase, conf)
  local fn = handler[phase]
  return function() return fn(handler, conf) end
end

return M
"""


@dataclass(frozen=True)
class LuaPluginInfo(PluginInfo):
    """A PluginInfo whose plugin is a Lua module found on ``lua_package_path``."""

    package_path: str = DEFAULT_PACKAGE_PATH


def package_path(raw: Mapping[str, str] | None, prefix: str = ".") -> str:
    """kong.conf's ``lua_package_path`` as nginx sees it (relative entries from the prefix, Kong's working dir)."""
    value = str((raw or {}).get("lua_package_path") or DEFAULT_PACKAGE_PATH)
    parts = []
    for entry in value.split(";"):
        entry = entry.strip()
        if entry:
            parts.append(entry if os.path.isabs(entry) else os.path.join(prefix, entry))
    return ";".join(parts)


def find_handler(name: str, path: str) -> Path | None:
    """``package.searchpath("kong.plugins.<name>.handler", path)`` done in Python (no Lua state needed)."""
    mod = f"kong/plugins/{name}/handler"
    for template in path.split(";"):
        candidate = Path(template.replace("?", mod))
        if candidate.is_file():
            return candidate
    return None


def _loader(state, path: str):
    """The loader module of one LuaState for one package path (installed once per state)."""
    loaders = state.__dict__.setdefault("_lua_plugin_loaders", {})
    loader = loaders.get(path)
    if loader is None:
        kong, ngx = state.api.pdk()
        cjson = state.cjson
        run = state.lua.eval(b"function(code, ...) return assert(loadstring(code, '=lua_plugins'))(...) end")
        loader = loaders[path] = run(LOADER, kong, ngx, path.encode(), cjson)
    return loader


def load_infos(names: Iterable[str], path: str, skip: Iterable[str] = ()) -> dict[str, LuaPluginInfo]:
    """The infos of every enabled custom plugin whose handler module exists on ``path`` (Lua before plugin servers,
    plugins.lua:163-172). Raises ConfigError with Kong's message for an invalid one."""
    from kong_emulator.native.runtime import LuaState
    from kong_emulator.pdk import PDK

    skip = set(skip)
    wanted = [n for n in names if n not in skip and n not in ("bundled", "off") and find_handler(n, path)]
    if not wanted:
        return {}
    state = LuaState(PDK())
    loader = _loader(state, path)
    out = {}
    for name in wanted:
        loaded, err = _call(loader[b"load"], name.encode())
        if loaded is None:
            raise ConfigError(f"{name} plugin is enabled but not installed;\n{state.from_lua(err)}")
        raw = {
            "Name": name,
            "Priority": _number(state.from_lua(loaded[b"priority"])),
            "Version": state.from_lua(loaded[b"version"]),
            "Phases": list(state.from_lua(loaded[b"phases"]) or []),
            "Schema": state.from_lua(loaded[b"schema"]),
        }
        if isinstance(raw["Schema"], dict) and raw["Schema"].get("name") not in (None, name):
            raise ConfigError(f"error loading plugin schemas: on plugin '{name}': schema name mismatch")
        info = validate_plugin_info(raw)
        out[name] = LuaPluginInfo(**{**info.__dict__, "package_path": path})
    return out


def _call(fn, *args):
    result = fn(*args)
    return result if isinstance(result, tuple) else (result, None)


def _number(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


class LuaPlugin:
    """The emulator's handler for one custom Lua plugin name, over one `LuaState` per simulated worker."""

    def __init__(self, info: LuaPluginInfo, states) -> None:
        self.name = info.name
        self.info = info
        self.package_path = info.package_path
        self.states = states
        self._handlers: dict[int, Any] = {}
        self._bound: dict[tuple[int, str, str], tuple[dict, Any]] = {}
        self.runs_as = f"natively in LuaJIT (a custom Lua plugin, kong/plugins/{info.name})"

    def startup_notes(self, plugin: Plugin) -> list[str]:
        # body_filter gets nginx's chunks (proxy.body_chunks: 4 KB proxy buffers, then the eof chunk), as in Kong
        return []

    def _handler(self, worker: int):
        handler = self._handlers.get(worker)
        if handler is None:
            state = self.states(worker)
            loaded, err = _call(_loader(state, self.info.package_path)[b"load"], self.name.encode())
            if loaded is None:
                raise RuntimeError(f"custom plugin {self.name} failed to load: {state.from_lua(err)}")
            handler = self._handlers[worker] = loaded[b"handler"]
        return handler

    def _function(self, worker: int, plugin: Plugin, phase: str):
        key = (worker, plugin.id, phase)
        cached = self._bound.get(key)
        if cached is not None and cached[0] is plugin.config:
            return cached[1]
        state = self.states(worker)
        conf = state.to_lua(plugin.config)
        fn = _loader(state, self.info.package_path)[b"bind"](self._handler(worker), phase.encode(), conf)
        self._bound[key] = (plugin.config, fn)
        return fn

    def run_phase(self, plugin: Plugin, phase: str, ctx, worker: int) -> None:
        from kong_emulator.native.runtime import NativeCall
        from kong_emulator.native.serverless import Serverless

        if phase not in self.info.phases:
            return
        state = self.states(worker)
        call = NativeCall(ctx, state.pdk.env, phase, plugin.name)
        fn = self._function(worker, plugin, phase)
        body, eof = None, True
        arg = getattr(ctx, "body_filter_arg", None) if phase == "body_filter" else None
        if arg is not None:
            body, eof = arg
        status, message = state.run(fn, call, plugin.name, body, eof)
        if arg is not None:
            arg[0], arg[1] = state.body or b"", state.eof
        if status == "error":
            Serverless._lua_error(call, message or "")
