"""Kong's bundled serverless plugins ``pre-function`` and ``post-function``, run for real in LuaJIT.

Kong sources (Kong/kong, 3.9): `kong/plugins/pre-function/{_handler,_schema}.lua` (``post-function`` is the same
code with another name and priority), `kong/plugins/{pre,post}-function/handler.lua` (PRIORITY 1000000 / -1000),
`kong/tools/sandbox/*` (see `bootstrap`).

* Schema: ``config.<phase>`` for certificate, rewrite, access, header_filter, body_filter, log: a required array of
  strings, default ``{}``; each string must compile (``loadstring``; nothing runs at validation), else
  ``error parsing <plugin>: <Lua error>``; at least one phase non-empty (``at_least_one_of`` entity check);
  ``consumer`` must be null (``typedefs.no_consumer``).
* Handler: the chunks of a config are compiled on its first event (``config_cache``), in the sandbox; a chunk that
  returns a function is run once, then the function is called for this and every later request; otherwise the
  chunk itself runs per request (the self-replacing closures of ``compile_phase_array``).
* The emulator's phases: ``rewrite`` (global plugins only), ``access``, ``header_filter`` and ``body_filter`` for
  every response the client gets -- proxied, exits and Kong's own errors, as in Kong (`proxy._filters`: body_filter
  once per chunk with ``ngx.arg[1]``/``ngx.arg[2]``, the body then an empty last chunk), ``log`` (the snapshot).
  ``response`` stays for direct callers: both filters once over the whole body (``ngx.arg[2] = true``); the proxy
  never sends it to a plugin that has the real filter phases. ``certificate`` chunks never run (no TLS here).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kong_emulator import KONG_VERSION
from kong_emulator.config.entities import Plugin, PluginInfo
from kong_emulator.pdk import LuaError
from kong_emulator.pdk.response import unexpected_error

log = logging.getLogger("kong_emulator")

PHASE_FIELDS = ("certificate", "rewrite", "access", "header_filter", "body_filter", "log")
# what plugins_iterator sees ("response": the whole-body stand-in for direct callers, skipped by the proxy)
EMULATOR_PHASES = ("certificate", "rewrite", "access", "response", "header_filter", "body_filter", "log")
PRIORITIES = {"pre-function": 1000000, "post-function": -1000}
AT_LEAST_ONE = "at least one of these fields must be non-empty: " + ", ".join(f"'config.{p}'" for p in PHASE_FIELDS)


def _checker():
    """A module-wide Lua state for schema checks (``loadstring`` only)."""
    global _CHECK_STATE
    if _CHECK_STATE is None:
        from kong_emulator.native.runtime import LuaState
        from kong_emulator.pdk import PDK

        _CHECK_STATE = LuaState(PDK())
    return _CHECK_STATE


_CHECK_STATE = None


def validate_function(plugin_name: str):
    """The schema's ``custom_validator`` for one Lua code string."""

    def check(code: Any) -> str | None:
        err = _checker().check(code)
        return None if err is None else f"error parsing {plugin_name}: {err}"

    return check


def _at_least_one_of(config: Any) -> str | None:
    if isinstance(config, dict) and any(config.get(p) for p in PHASE_FIELDS):
        return None
    return AT_LEAST_ONE


def schema(plugin_name: str) -> dict[str, Any]:
    """``_schema.lua`` in the emulator's schema dialect (`plugin_schema`)."""
    phase_functions = {
        "type": "array",
        "required": True,
        "default": [],
        "description": "Lua code strings run in this phase, in order (each compiled once per config).",
        "elements": {"type": "string", "required": False, "custom_validator": validate_function(plugin_name)},
    }
    return {
        "name": plugin_name,
        "fields": [
            {"consumer": {"type": "foreign", "reference": "consumers", "eq": None}},
            {
                "config": {
                    "type": "record",
                    "fields": [{phase: dict(phase_functions)} for phase in PHASE_FIELDS],
                }
            },
        ],
    }


@dataclass(frozen=True)
class NativePluginInfo(PluginInfo):
    """A PluginInfo with the schema's entity check, which `declarative` runs on the normalised config."""

    entity_check: Callable[[Any], str | None] | None = None


def info(plugin_name: str) -> NativePluginInfo:
    return NativePluginInfo(
        name=plugin_name,
        version=KONG_VERSION,
        priority=PRIORITIES[plugin_name],
        phases=EMULATOR_PHASES,
        schema=schema(plugin_name),
        entity_check=_at_least_one_of,
    )


class Serverless:
    """The handler of one serverless plugin name, over one `LuaState` per simulated worker."""

    def __init__(self, name: str, states) -> None:
        self.name = name
        self.info = info(name)
        self.states = states  # worker id → LuaState
        self._compiled: dict[tuple[int, str], tuple[dict, Any]] = {}

    def startup_notes(self, plugin: Plugin) -> list[str]:
        """What an operator must know about this config in the emulator (logged at start)."""
        notes = []
        if plugin.config.get("certificate"):
            notes.append("its 'certificate' chunks never run here (the emulator terminates no TLS)")
        return notes

    def _functions(self, worker: int, plugin: Plugin):
        key = (worker, plugin.id)
        cached = self._compiled.get(key)
        if cached is not None and cached[0] is plugin.config:
            return cached[1]
        funcs = self.states(worker).compile(plugin.config)
        self._compiled[key] = (plugin.config, funcs)
        return funcs

    def runs(self, plugin: Plugin, phase: str) -> bool:
        """Whether `run_phase` does anything: only phases with chunks run (Kong's ``no_op`` for the others)."""
        if phase == "response":
            return bool(plugin.config.get("header_filter") or plugin.config.get("body_filter"))
        return phase in PHASE_FIELDS and bool(plugin.config.get(phase))

    def run_phase(self, plugin: Plugin, phase: str, ctx, worker: int) -> None:
        """One event of the emulator's ``phase``; Lua errors end like Kong's phase runner ends them."""
        if phase == "response":
            for kong_phase in ("header_filter", "body_filter"):
                if plugin.config.get(kong_phase):
                    self._event(plugin, kong_phase, ctx, worker)
                    if ctx.exit is not None:
                        return
            return
        if phase in PHASE_FIELDS and plugin.config.get(phase):
            self._event(plugin, phase, ctx, worker)

    def _event(self, plugin: Plugin, phase: str, ctx, worker: int) -> None:
        from kong_emulator.native.runtime import NativeCall  # lupa is loaded when a chunk first runs

        state = self.states(worker)
        call = NativeCall(ctx, state.pdk.env, phase, plugin.name)
        try:
            fn = self._functions(worker, plugin)[phase.encode()]
        except LuaError as exc:
            self._lua_error(call, str(exc))
            return
        body, eof = None, True
        arg = getattr(ctx, "body_filter_arg", None) if phase == "body_filter" else None
        if arg is not None:  # the proxy's body_filter: this call's chunk
            body, eof = arg
        elif phase == "body_filter":  # the whole-body "response" step
            body = ctx.response.body if ctx.response.body is not None else ctx.upstream_body or b""
        status, message = state.run(fn, call, plugin.name, body, eof)
        if arg is not None:
            arg[0], arg[1] = state.body or b"", state.eof
        elif phase == "body_filter" and state.body is not None and state.body != body:
            ctx.response.body = state.body
            ctx.response.headers.clear("Content-Length")
        if status == "error":
            self._lua_error(call, message or "")

    @staticmethod
    def _lua_error(call, message: str) -> None:
        """Kong: ``kong.log.err(err)``; before the response a 500 ``An unexpected error occurred``
        (``KONG_UNEXPECTED``); in body_filter (headers sent) and log only the log line."""
        call.log("err", message)
        if call.phase not in ("log", "body_filter") and call.ctx.exit is None:
            call.ctx.exit = unexpected_error(call.ctx, call.phase)
            call.ctx.response.source = "error"
