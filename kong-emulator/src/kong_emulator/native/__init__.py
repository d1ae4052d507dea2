"""Bundled Kong plugins the emulator runs itself, in-process, instead of reporting them as unsupported.

Today: ``pre-function`` (priority 1000000) and ``post-function`` (priority -1000), whose Lua runs in an embedded
LuaJIT (`runtime.LuaState`) with a ``kong`` PDK that dispatches to the emulator's Python PDK — the same functions
plugin servers reach over MessagePack-RPC, so both kinds of plugin see one request state; and ``cors`` (2000),
``proxy-cache`` (100, strategy memory), ``prometheus`` (13) and ``file-log`` (9), re-implemented in Python from
Kong's handlers (`cors`, `proxy_cache`, `prometheus`, `file_log`; each module names its Kong sources).

The API the app uses:

* `native_infos()`: name → `PluginInfo` (Kong's priority, the emulator phases, the schema). Merged into the infos
  from the query commands, they make `declarative` validate these plugins with their schema (not list them in
  ``unsupported_plugins``) and `plugins_iterator` order them by priority among the external plugins;
* `NativeRunner(external, ...)`: what the engine calls ``run_phase`` on; native plugins run here, every other
  plugin goes to ``external`` (`bridge.PluginRunner`), whose attributes it otherwise exposes;
* `report(declarative)`: the start-up lines about configured native plugins (nothing silently ignored:
  docs/architecture.md §3).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from kong_emulator.config.entities import PluginInfo
from kong_emulator.native.serverless import Serverless
from kong_emulator.native.serverless import info as serverless_info

log = logging.getLogger("kong_emulator")

NATIVE_PLUGINS = ("pre-function", "post-function")
# bundled plugins re-implemented in Python (native/<name>.py): name → module, class
PYTHON_PLUGINS = {
    "cors": ("cors", "Cors"),
    "file-log": ("file_log", "FileLog"),
    "prometheus": ("prometheus", "Prometheus"),
    "proxy-cache": ("proxy_cache", "ProxyCache"),
}
UNTRUSTED_LUA = ("off", "sandbox", "on")


_INFOS: dict[str, PluginInfo] = {}


def native_infos() -> dict[str, PluginInfo]:
    """The PluginInfo of every natively-run bundled plugin (the same objects every time)."""
    if not _INFOS:
        _INFOS.update({name: serverless_info(name) for name in NATIVE_PLUGINS})
        _INFOS.update({name: _python_module(name).info() for name in PYTHON_PLUGINS})
    return dict(_INFOS)


def with_native_infos(infos: Mapping[str, PluginInfo]) -> dict[str, PluginInfo]:
    """``infos`` plus the native plugins' (a plugin server of the same name keeps its own)."""
    return {**native_infos(), **infos}


def sandbox_settings(raw: Mapping[str, str] | None) -> tuple[str, tuple[str, ...]]:
    """``untrusted_lua`` (default ``sandbox``) and ``untrusted_lua_sandbox_requires`` from kong.conf's raw keys."""
    raw = raw or {}
    mode = str(raw.get("untrusted_lua", "sandbox")).strip().lower() or "sandbox"
    if mode not in UNTRUSTED_LUA:
        from kong_emulator.config.errors import ConfigError

        raise ConfigError("expected one of: off, sandbox, on", where="in kong.conf", field="untrusted_lua")
    requires = str(raw.get("untrusted_lua_sandbox_requires", "") or "")
    return mode, tuple(r.strip() for r in requires.split(",") if r.strip() and r.strip() != "NONE")


def _python_module(name: str):
    import importlib

    return importlib.import_module(f"kong_emulator.native.{PYTHON_PLUGINS[name][0]}")


def _python_handler(name: str, states):
    cls = getattr(_python_module(name), PYTHON_PLUGINS[name][1])
    return cls(states) if name == "file-log" else cls()


class NativeRunner:
    """The engine's runner: native plugins in-process, the rest through ``external`` (a `bridge.PluginRunner`)."""

    def __init__(
        self,
        external: Any,
        *,
        untrusted_lua: str = "sandbox",
        sandbox_requires: tuple[str, ...] = (),
        infos: Mapping[str, PluginInfo] | None = None,
    ) -> None:
        self.external = external
        self.untrusted_lua = untrusted_lua
        self.sandbox_requires = tuple(sandbox_requires)
        self._states: dict[int, Any] = {}
        ours = native_infos()
        names = [n for n in NATIVE_PLUGINS if infos is None or infos.get(n) is ours[n]]
        self.natives = {name: Serverless(name, self.state) for name in names}
        for name in PYTHON_PLUGINS:
            if infos is None or infos.get(name) is ours[name]:
                native = _python_handler(name, self.state)
                native.info = ours[name]
                self.natives[name] = native
        from kong_emulator.native.lua_plugins import LuaPlugin, LuaPluginInfo

        for name, info in (infos or {}).items():  # custom Lua plugins (kong/plugins/<name>/handler.lua)
            if isinstance(info, LuaPluginInfo):
                self.natives[name] = LuaPlugin(info, self.state)

    def state(self, worker: int):
        """The worker's Lua VM, created on first use."""
        st = self._states.get(worker)
        if st is None:
            from kong_emulator.native.runtime import LuaState

            st = self._states[worker] = LuaState(
                self.external.pdk,
                untrusted_lua=self.untrusted_lua,
                sandbox_requires=self.sandbox_requires,
                workers=len(getattr(self.external, "workers", [None])),
            )
        return st

    async def run_phase(self, plugin, phase: str, ctx) -> None:
        native = self.natives.get(plugin.name)
        if native is None:
            await self.external.run_phase(plugin, phase, ctx)
            return
        worker = self.external.worker_for(ctx).worker_id
        ctx.phase = phase
        ctx.current_plugin = plugin
        native.run_phase(plugin, phase, ctx, worker)

    def report(self, declarative) -> None:
        """Log, at start, each configured native plugin and what of it the emulator cannot do."""
        for native in self.natives.values():
            if hasattr(native, "configure"):  # Kong's handler:configure(configs), e.g. prometheus
                native.configure(getattr(declarative, "plugins", []))
        instances: dict[str, list] = {}
        for plugin in getattr(declarative, "plugins", []):
            if plugin.name in self.natives:
                instances.setdefault(plugin.name, []).append(plugin)
        for name, plugins in instances.items():  # one line per plugin, not per instance (sv-edge has dozens)
            native = self.natives[name]
            how = getattr(native, "runs_as", None) or f"natively in LuaJIT, untrusted_lua = {self.untrusted_lua}"
            kind = "custom Lua plugin" if hasattr(native, "package_path") else "bundled plugin"
            first = plugins[0].instance_name or plugins[0].id
            label = first if len(plugins) == 1 else f"{len(plugins)} instances"
            log.info("[emulator] %s '%s' (%s) runs %s", kind, name, label, how)
            for plugin in plugins:
                for note in native.startup_notes(plugin):
                    label = plugin.instance_name or plugin.id
                    log.warning("[emulator] %s '%s' (%s): %s", kind, name, label, note)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.external, name)
