"""What every emulated PDK function shares: the call state, Lua errors, phase checks, Lua value semantics.

Values cross two boundaries here, and each one changes them the way Kong does:
* MessagePack → Lua (`to_lua`): nil-valued map keys vanish, bin becomes a string, whole floats are integers;
* Lua → MessagePack (`fix_mmap`, `lua_table`): an empty table packs as ``[]``, a 1..n table as an array.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import socket
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kong_emulator.config.entities import Consumer
from kong_emulator.runloop.context import RequestContext

log = logging.getLogger("kong_emulator.kong")

TIMER_ERROR = "API disabled in the context of ngx.timer"

# kong/pdk/private/phases.lua groups, by phase name
REQUEST_PHASES = frozenset({"rewrite", "access", "header_filter", "response", "body_filter", "log", "admin_api"})
REWRITE_ACCESS_HEADER = frozenset({"rewrite", "access", "response", "header_filter", "error", "admin_api"})
HEADER_BODY_LOG = frozenset({"response", "header_filter", "body_filter", "log", "error", "admin_api"})
AUTH_AND_LATER = frozenset({"access", "header_filter", "body_filter", "log"})
ROUTER_PHASES = frozenset({"access", "header_filter", "response", "body_filter", "log"})
REWRITE_ACCESS = frozenset({"rewrite", "access"})
REWRITE_ACCESS_BALANCER = frozenset({"rewrite", "access", "balancer"})


class LuaError(Exception):
    """A Lua ``error()`` raised by a PDK function: it escapes the plugin's phase handler (Kong §1.8)."""


@dataclass
class PDKEnv:
    """Node-wide facts the PDK reports: node id, hostname, ``trusted_ips``, and the consumers for load_consumer."""

    node_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    hostname: str = field(default_factory=socket.gethostname)
    trusted_ips: list[str] = field(default_factory=list)  # CIDRs; Kong's default is none
    consumers: Mapping[str, Consumer] | Callable[[], Mapping[str, Consumer]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._networks = [ipaddress.ip_network(c, strict=False) for c in self.trusted_ips]
        self._trusted: dict[str, bool] = {}  # address → answer (peers repeat; bounded below)

    def is_trusted(self, address: str) -> bool:
        """``kong.ip.is_trusted``: is ``address`` inside one of ``trusted_ips``?"""
        known = self._trusted.get(address)
        if known is not None:
            return known
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        answer = any(ip in net for net in self._networks)
        if len(self._trusted) > 4096:
            self._trusted.clear()
        self._trusted[address] = answer
        return answer

    def all_consumers(self) -> Mapping[str, Consumer]:
        return self.consumers() if callable(self.consumers) else self.consumers


class Call:
    """The state one event's PDK calls run against (Kong: ngx.ctx, ngx.var, and the log timer's saved data)."""

    __slots__ = ("ctx", "env", "phase", "plugin_name", "saved")

    def __init__(self, ctx: RequestContext, env: PDKEnv, phase: str, plugin_name: str) -> None:
        self.ctx = ctx
        self.env = env
        self.phase = phase
        self.plugin_name = plugin_name
        self.saved = ctx.snapshot if phase == "log" else None

    def check(self, phases: frozenset[str]) -> None:
        """``check_phase``: a Lua error outside the accepted phases."""
        if self.phase not in phases:
            names = ", ".join(sorted(phases))
            raise LuaError(f"function cannot be called in {self.phase} phase (only in: {names})")

    def need_request(self, phases: frozenset[str] = REQUEST_PHASES) -> None:
        """A function that reads ``ngx.var``/``ngx.req``: it fails in the log *timer*, where there is no request."""
        self.check(phases)
        if self.phase == "log":
            raise LuaError(TIMER_ERROR)

    def log(self, level: str, message: str) -> None:
        """A ``kong.log.<level>`` line, namespaced with the plugin name as Kong does for external plugins."""
        self.ctx.log_lines.append((level, self.plugin_name, message))
        log.log(_LEVELS.get(level, logging.INFO), "[kong] mp_rpc.lua [%s] %s", self.plugin_name, message)


_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "notice": logging.INFO,
    "warn": logging.WARNING,
    "err": logging.ERROR,
    "crit": logging.CRITICAL,
    "alert": logging.CRITICAL,
    "emerg": logging.CRITICAL,
}


# -- Lua value semantics ------------------------------------------------------------------------------


def is_str(v: Any) -> bool:
    """Lua ``type(v) == "string"`` (msgpack str and bin both decode to Lua strings)."""
    return isinstance(v, str | bytes)


def is_num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def lua_str(v: Any) -> str:
    """A Lua string as Python ``str`` (bin arrives as bytes)."""
    return v.decode("utf-8", "surrogateescape") if isinstance(v, bytes) else v


def tostring(v: Any) -> str:
    """Lua ``tostring`` of a value that came over msgpack."""
    if v is None:
        return "nil"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    if isinstance(v, dict | list):
        return f"table: 0x{id(v) & 0xFFFFFFFF:08x}"
    return lua_str(v) if is_str(v) else str(v)


def to_lua(v: Any) -> Any:
    """A decoded msgpack value as the Lua value Kong holds (and would pack back): see the module docstring."""
    if isinstance(v, dict):
        out = {k: to_lua(x) for k, x in v.items() if x is not None}
        return lua_table(out)
    if isinstance(v, list | tuple):
        items = [to_lua(x) for x in v]
        while items and items[-1] is None:
            items.pop()
        return items
    if isinstance(v, bytes):
        return lua_str(v)
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return v


def lua_table(d: dict) -> dict | list:
    """How lua-MessagePack packs a table: empty → ``[]``, keys exactly 1..n → an array, otherwise a map."""
    if not d:
        return []
    n = len(d)
    if all(type(k) is int for k in d) and set(d) == set(range(1, n + 1)):
        return [d[i] for i in range(1, n + 1)]
    return d


def fix_mmap(t: dict[str, Any]) -> dict[str, list]:
    """Kong's ``fix_mmap``: every value a list (``true`` → ``[]``), an empty result the empty *map*."""
    out: dict[str, list] = {}
    for k, v in t.items():
        if v is True:
            out[k] = []
        elif isinstance(v, str):
            out[k] = [v]
        else:
            out[k] = v
    return out


def cjson_encode(v: Any) -> str:
    """``cjson.encode``: compact, ``/`` escaped, empty tables as ``{}``."""
    return json.dumps(_cjson_prep(v), separators=(",", ":"), ensure_ascii=False).replace("/", "\\/")


def _cjson_prep(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _cjson_prep(x) for k, x in v.items() if x is not None} or {}
    if isinstance(v, list | tuple):
        return [_cjson_prep(x) for x in v] if v else {}
    if isinstance(v, bytes):
        return lua_str(v)
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return v


def check_max(value: Any, name: str, default: int) -> int:
    """The ``max_headers``/``max_args`` argument checks shared by get_headers and get_query."""
    if value is None:
        return default
    if not is_num(value):
        raise LuaError(f"{name} must be a number")
    if value < 1:
        raise LuaError(f"{name} must be >= 1")
    if value > 1000:
        raise LuaError(f"{name} must be <= 1000")
    return int(value)


def header_value(name: Any, value: Any) -> list[str]:
    """``validate_header`` + ``normalize_header`` (set_header/add_header): one string, number or boolean.

    Kong's checks.lua rejects a table here; an empty string becomes " " (nginx would drop the header).
    """
    if not is_str(name):
        raise LuaError(f"invalid header name {tostring(name)!r}: got {lua_type(name)}, expected string")
    if not (is_str(value) or is_num(value) or isinstance(value, bool)):
        raise LuaError(
            f'invalid header value for "{lua_str(name)}": got {lua_type(value)}, expected string, number or boolean'
        )
    return [_non_empty(tostring(value))]


def multi_header_value(name: Any, value: Any) -> list[str]:
    """``validate_headers`` + ``normalize_multi_header`` (set_headers, exit headers).

    A value is a string, number, boolean or an array of strings; an EMPTY array clears the header
    (``ngx.req.set_header(name, {})`` / ``ngx.header[name] = {}``), which the caller sees as ``[]``.
    """
    if not is_str(name):
        raise LuaError(f"invalid header name {tostring(name)!r}: got {lua_type(name)}, expected string")
    if isinstance(value, list):
        for v in value:
            if not is_str(v):
                raise LuaError(f'invalid header value in array "{lua_str(name)}": got {lua_type(v)}, expected string')
        return [_non_empty(lua_str(v)) for v in value]
    if is_str(value) or is_num(value) or isinstance(value, bool):
        return [_non_empty(tostring(value))]
    raise LuaError(
        f'invalid header value for "{lua_str(name)}": got {lua_type(value)}, expected string, number, boolean or '
        "array of strings"
    )


def _non_empty(value: str) -> str:
    return " " if value == "" else value


def lua_type(v: Any) -> str:
    """Lua ``type()`` of a decoded msgpack value."""
    if v is None:
        return "nil"
    if isinstance(v, bool):
        return "boolean"
    if is_num(v):
        return "number"
    if is_str(v):
        return "string"
    return "table"


def headers_table(headers: Any, what: str = "headers") -> dict:
    """``validate_headers``: a table of name → value (nil allowed by callers)."""
    if not isinstance(headers, dict):
        if isinstance(headers, list) and not headers:
            return {}
        raise LuaError(f"{what} must be a table")
    return headers
