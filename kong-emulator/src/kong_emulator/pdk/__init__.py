"""The PDK as external plugins see it through Kong: ``call_pdk_method`` and ``get_step_method`` of
`kong/runloop/plugin_servers/rpc/mp_rpc.lua`, over the functions in this package.

``PDK.call(call, method, args)`` resolves ``method`` (exposed_api overrides first, then the PDK tree), calls it with
the unpacked args and returns the value Kong would send back, already through ``must_fix`` (fix_mmap, fix_raw).
Only the first return value survives (Kong 3.0+). An unknown name logs ``could not find pdk method: <name>`` and
returns None (this includes ``kong.ctx.plugin.*``, which Kong does not expose). A Lua error raises `LuaError`.
"""

from __future__ import annotations

from typing import Any

from kong_emulator.pdk import client, misc, request, response, service
from kong_emulator.pdk.base import Call, LuaError, PDKEnv, to_lua

__all__ = ["PDK", "STEP_METHODS", "TERMINAL_METHODS", "Call", "LuaError", "PDKEnv", "step_method_for"]

TERMINAL_METHODS = frozenset({"kong.response.exit", "kong.response.error"})

# get_step_method's by_pdk_method table
STEP_METHODS = {
    "kong.client.get_credential": "plugin.StepCredential",
    "kong.client.load_consumer": "plugin.StepConsumer",
    "kong.client.get_consumer": "plugin.StepConsumer",
    "kong.client.authenticate": "plugin.StepCredential",
    "kong.node.get_memory_stats": "plugin.StepMemoryStats",
    "kong.router.get_route": "plugin.StepRoute",
    "kong.router.get_service": "plugin.StepService",
    "kong.request.get_query": "plugin.StepMultiMap",
    "kong.request.get_headers": "plugin.StepMultiMap",
    "kong.response.get_headers": "plugin.StepMultiMap",
    "kong.service.response.get_headers": "plugin.StepMultiMap",
}

# Tables of the PDK tree: calling one is a Lua error ("attempt to call a table value"), not an unknown method.
_NAMESPACES = frozenset(
    {
        "kong",
        "kong.request",
        "kong.client",
        "kong.response",
        "kong.service",
        "kong.service.request",
        "kong.service.response",
        "kong.ctx",
        "kong.ctx.shared",
        "kong.ctx.plugin",
        "kong.nginx",
        "kong.node",
        "kong.plugin",
        "kong.router",
        "kong.ip",
    }
)


def step_method_for(method: str, result: Any = None, err: Any = None) -> str:
    """``get_step_method``: StepError for ``(nil, err)`` (never in 3.x), ``_method``, the table, or Step."""
    if result is None and err is not None:
        return "plugin.StepError"
    if isinstance(result, dict) and isinstance(result.get("_method"), str):
        return result["_method"]
    return STEP_METHODS.get(method, "plugin.Step")


class PDK:
    """The method table and Kong's calling convention."""

    def __init__(self, env: PDKEnv | None = None) -> None:
        self.env = env or PDKEnv()
        self.functions: dict[str, Any] = {}
        for module in (request, client, response, service, misc):
            self.functions.update(module.FUNCTIONS)

    def new_call(self, ctx, phase: str, plugin_name: str) -> Call:
        """The state for one event (one phase of one plugin in one request)."""
        return Call(ctx, self.env, phase, plugin_name)

    def call(self, call: Call, method: Any, args: Any) -> Any:
        """Run one PDK call like ``call_pdk_method``; may raise `LuaError`."""
        fn = self.functions.get(method) if isinstance(method, str) else None
        if fn is None:
            if method in _NAMESPACES:
                raise LuaError(f"attempt to call field '{str(method).rsplit('.', 1)[-1]}' (a table value)")
            call.log("err", f"could not find pdk method: {method}")
            return None
        if type(args) is list:
            return fn(call, *args)
        if isinstance(args, dict):
            return fn(call, *_unpack_map(args))
        return fn(call, args)


def _unpack_map(args: dict) -> list:
    """``unpack`` of a msgpack map: only its 1..n integer keys count."""
    table = to_lua(args)
    return table if isinstance(table, list) else []
