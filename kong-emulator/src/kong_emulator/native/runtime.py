"""An embedded LuaJIT state (lupa) whose ``kong`` PDK dispatches to the emulator's Python PDK.

One `LuaState` per simulated nginx worker, as Kong has one Lua VM per worker: upvalues of a serverless chunk
(counters, caches) are per worker. Values cross the boundary like they do inside Kong, not like over MessagePack:

* Python → Lua (`to_lua_value`): dicts and lists become tables (``None`` members vanish), str becomes a Lua string;
  the multi-map results Kong's plugin-server bridge had ``fix_mmap``-ed go back to Lua's shape (``"v"`` for one value,
  ``true`` for a bare query arg), ``kong.log.serialize`` is a table, not a JSON string;
* Lua → Python (`from_lua`): strings are ``str`` (undecodable bytes kept with ``surrogateescape``), tables with keys
  exactly 1..n are lists, other tables dicts, an empty table ``[]`` (`pdk.base.lua_table`), functions and userdata
  (``ngx.null``) ``None``.

``kong.ctx.shared`` is a real Lua table per request, kept in step with ``ctx.shared`` (what Python plugins read
and write) around every native event: Python values that changed since the last sync are converted in before the
event, and every Lua value is converted back after it, so nested changes made in Lua are seen by Python plugins too.
``ngx.ctx`` mirrors ``ctx.nginx_ctx`` (``kong.nginx.get_ctx``/``set_ctx``) the same way; ``kong.ctx.plugin`` is
Lua-only, one table per request and plugin *name*: Kong keys it by the plugin's handler (kong/init.lua:268
``set_named_ctx(kong, "plugin", plugin.handler, ctx)``, kong/pdk/ctx.lua:128-140 ``ngx.ctx[handler]``), and there is
one handler per name (kong/db/dao/plugins.lua:319-349), so the global instance that rewrite runs and the route
instance the later phases run share it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import os
import time
import zlib
from email.utils import formatdate
from typing import Any
from urllib.parse import quote, unquote, urlencode

import lupa.luajit21 as luajit

from kong_emulator import KONG_VERSION
from kong_emulator.native.bootstrap import BOOTSTRAP
from kong_emulator.pdk import PDK, STEP_METHODS, TERMINAL_METHODS, LuaError
from kong_emulator.pdk.base import REQUEST_PHASES, Call, lua_table
from kong_emulator.pdk.misc import nginx_var
from kong_emulator.pdk.response import record_exit
from kong_emulator.runloop.context import RequestContext
from kong_emulator.tools import kong_errors

log = logging.getLogger("kong_emulator.kong")

# exposed_api entries Kong only gives external plugins: a Lua plugin has kong.ctx.shared / ngx.var / ngx.ctx
EXPOSED_ONLY = frozenset(
    {
        "kong.ctx.shared.get",
        "kong.ctx.shared.set",
        "kong.nginx.get_var",
        "kong.nginx.get_ctx",
        "kong.nginx.set_ctx",
        "kong.nginx.req_start_time",
    }
)
MULTI_MAP = frozenset(m for m, step in STEP_METHODS.items() if step == "plugin.StepMultiMap")
MAX_DEPTH = 100
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


def kong_version_num(version: str = KONG_VERSION) -> int:
    major, minor, patch = (int(p) for p in version.split(".")[:3])
    return major * 1000000 + minor * 1000 + patch


class NativeCall(Call):
    """The PDK call state of a Lua plugin's event.

    Unlike an external plugin's log handler (a timer, no request: ``API disabled in the context of ngx.timer``),
    a Lua plugin's ``log`` runs in nginx's log phase: request functions work; PDK overrides still read the
    snapshot Kong saved (status, headers, serialize), which the emulator's ``Call`` already arranges.
    """

    __slots__ = ()

    def need_request(self, phases: frozenset[str] = REQUEST_PHASES) -> None:
        self.check(phases)

    def log(self, level: str, message: str) -> None:
        self.ctx.log_lines.append((level, self.plugin_name, message))
        log.log(_LEVELS.get(level, logging.INFO), "[kong] [%s] %s", self.plugin_name, message)


def _s(value: str) -> bytes:
    return value.encode("utf-8", "surrogateescape")


class _RequestTables:
    """One request's Lua tables in one LuaState, and what was last synced with the Python dicts."""

    __slots__ = ("ngx_ctx", "ngx_ctx_seen", "plugin", "shared", "shared_seen")

    def __init__(self, state: LuaState) -> None:
        self.shared = state.api.new_table()  # a call into Lua: cheaper than lupa's LuaRuntime.table()
        self.shared_seen: dict[Any, Any] = {}
        self.ngx_ctx = state.api.new_table()
        self.ngx_ctx_seen: dict[Any, Any] = {}
        self.plugin: dict[str, Any] = {}


class LuaState:
    """A LuaJIT VM with Kong's ``kong``/``ngx`` globals, its sandbox and the serverless compiler."""

    def __init__(
        self,
        pdk: PDK,
        *,
        untrusted_lua: str = "sandbox",
        sandbox_requires: tuple[str, ...] = (),
        workers: int = 1,
    ) -> None:
        self.pdk = pdk
        self.workers = workers
        self.call: NativeCall | None = None
        self.body: bytes | None = None  # body_filter: ngx.arg[1], the chunk (after the call: what goes on)
        self.eof = True  # body_filter: ngx.arg[2]
        self.lua = luajit.LuaRuntime(
            unpack_returned_tuples=True,
            register_eval=False,
            register_builtins=False,
            encoding=None,
            attribute_filter=_no_attributes,
        )
        methods = self._methods()
        cjson = self.to_lua({})
        cjson[b"encode"] = self._cjson_encode
        cjson[b"decode"] = self._cjson_decode
        self.cjson = cjson  # also what custom Lua plugins get from require "cjson" (lua_plugins)
        self.api = self._boot(methods, untrusted_lua, sandbox_requires, cjson)

    def _boot(self, methods, untrusted_lua: str, requires: tuple[str, ...], cjson):
        loader = self.lua.eval(b"function(code, ...) return assert(loadstring(code, '=bootstrap'))(...) end")
        return loader(
            BOOTSTRAP,
            self._dispatch,
            self._emit_log,
            self._var_get,
            methods,
            _s(untrusted_lua),
            self.to_lua(list(requires)),
            cjson,
            self._phase,
            self._header_get,
            self._header_set,
        )

    def _methods(self):
        names = []
        for name in sorted(self.pdk.functions):
            if name in EXPOSED_ONLY or (name.startswith("kong.log") and name not in _LOG_PDK):
                continue
            names.append([name, name in TERMINAL_METHODS])
        table = self.to_lua(names)
        table[b"version"] = _s(KONG_VERSION)
        table[b"version_num"] = kong_version_num()
        return table

    # -- conversions --------------------------------------------------------------------------------------

    def to_lua(self, value: Any, depth: int = 0) -> Any:
        if value is None or isinstance(value, bool | int | float | bytes):
            return value
        if isinstance(value, str):
            return _s(value)
        if depth > MAX_DEPTH:
            raise LuaError("table nested too deeply")
        if isinstance(value, dict):
            table = self.lua.table()
            for k, v in value.items():
                if v is not None and k is not None:
                    table[self.to_lua(k, depth + 1)] = self.to_lua(v, depth + 1)
            return table
        if isinstance(value, list | tuple):
            table = self.lua.table()
            for i, v in enumerate(value, 1):
                if v is not None:
                    table[i] = self.to_lua(v, depth + 1)
            return table
        return _s(str(value))

    def from_lua(self, value: Any, depth: int = 0) -> Any:
        if isinstance(value, bytes):
            return value.decode("utf-8", "surrogateescape")
        if value is None or isinstance(value, bool | int | float):
            return value
        kind = luajit.lua_type(value)
        if kind != "table":
            return None  # function, userdata (ngx.null), thread: no MessagePack/JSON form
        if depth > MAX_DEPTH:
            raise LuaError("cannot convert a table nested this deeply (a cycle?)")
        out = {}
        for k, v in value.items():
            out[self.from_lua(k, depth + 1)] = self.from_lua(v, depth + 1)
        return lua_table(out)

    # -- callbacks from Lua ---------------------------------------------------------------------------------

    def _dispatch(self, name: bytes, *args):
        call = self.call
        method = name.decode()
        try:
            if call is None:
                raise LuaError("no request (PDK called outside a phase handler)")
            py_args = [self.from_lua(a) for a in args]
            special = _SPECIAL.get(method)
            if special is not None:
                result = special(self, call, *py_args)
            else:
                result = self.pdk.call(call, method, py_args)
                if method in MULTI_MAP and isinstance(result, dict):
                    result = {k: _unfix(v) for k, v in result.items()}
                elif method == "kong.log.serialize" and isinstance(result, str):
                    result = json.loads(result)
            return True, self.to_lua(result)
        except LuaError as exc:
            return False, _s(str(exc))

    def _emit_log(self, level: bytes, message: bytes) -> None:
        text = message.decode("utf-8", "surrogateescape")
        if self.call is not None:
            self.call.log(level.decode(), text)
        else:
            log.log(_LEVELS.get(level.decode(), logging.INFO), "[kong] [lua] %s", text)

    def _var_get(self, name: Any):
        call = self.call
        if call is None:
            return False, b"API disabled in the current context"
        if not isinstance(name, bytes):
            return False, b"bad argument #1 to '?' (string expected)"
        return True, self.to_lua(nginx_var(call, name.decode("utf-8", "surrogateescape").lower()))

    def _phase(self):
        return _s(self.call.phase) if self.call is not None else b"timer"

    def _header_get(self, name: Any):
        """``ngx.header[name]`` (read): the response header about to be sent; a table for repeated ones."""
        call = self.call
        if call is None:
            return False, b"API disabled in the current context"
        if not isinstance(name, bytes):
            return True, None
        key = _header_name(name)
        headers = call.saved.response_headers if call.saved is not None else call.ctx.response.headers
        values = headers.get_all(key)
        if not values:
            return True, None
        return True, self.to_lua(values[0] if len(values) == 1 else values)

    def _header_set(self, name: Any, value: Any):
        """``ngx.header[name] = value``: nil clears, a table sets every value; refused once headers are sent."""
        call = self.call
        if call is None:
            return False, b"API disabled in the current context"
        if not isinstance(name, bytes):
            return False, b"bad argument #2 to '__newindex' (string expected)"
        key = _header_name(name)
        if call.phase not in ("rewrite", "access", "header_filter", "response"):
            return False, _s(f"attempt to set ngx.header.{key} after sending out response headers")
        headers = call.ctx.response.headers
        py = self.from_lua(value)
        if py is None or (isinstance(py, list | dict) and not py):
            headers.clear(key)
        elif isinstance(py, list | dict):
            items = py if isinstance(py, list) else [py[k] for k in sorted(py)]
            headers.set(key, [_header_text(v) for v in items])
        else:
            headers.set(key, _header_text(py))
        return True, None

    def _cjson_encode(self, value):
        from kong_emulator.pdk.base import cjson_encode

        return _s(cjson_encode(self.from_lua(value)))

    def _cjson_decode(self, text):
        try:
            return self.to_lua(json.loads(self.from_lua(text)))
        except (TypeError, ValueError) as exc:
            return None, _s(f"Expected value but found invalid token: {exc}")

    # -- compile and run -------------------------------------------------------------------------------------

    def check(self, code: str) -> str | None:
        """``loadstring(code)``'s error, or None: compiles, runs nothing."""
        err = self.api.check(_s(code))
        return None if err is None else self.from_lua(err)

    def compile(self, config: dict[str, Any]):
        """``config_cache[config]``: the phase functions of one serverless config (may raise `LuaError`)."""
        conf = {k: v for k, v in config.items() if isinstance(v, list)}
        try:
            return self.api.compile(self.to_lua(conf))
        except luajit.LuaError as exc:
            raise LuaError(_lua_message(exc)) from None

    def tables_for(self, ctx: RequestContext) -> _RequestTables:
        tables = getattr(ctx, "_native_lua_tables", None)
        if tables is None:
            tables = _RequestTables(self)
            ctx._native_lua_tables = tables  # type: ignore[attr-defined]
        return tables

    def run(
        self, fn, call: NativeCall, handler: str, body: bytes | None = None, eof: bool = True
    ) -> tuple[str, str | None]:
        """Run one phase function for ``call``: ("ok" | "exit" | "error", message). ``handler`` is the plugin's name,
        the key of its ``kong.ctx.plugin`` (every instance of it shares the table). In body_filter ``body``/``eof``
        are ``ngx.arg[1]``/``ngx.arg[2]``; afterwards ``self.body``/``self.eof`` hold what the chunk made of them."""
        ctx = call.ctx
        tables = self.tables_for(ctx)
        shared = call.saved.shared if call.saved is not None else ctx.shared
        nginx_ctx = call.saved.nginx_ctx if call.saved is not None else ctx.nginx_ctx
        self._sync_in(shared, tables.shared, tables.shared_seen)
        self._sync_in(nginx_ctx, tables.ngx_ctx, tables.ngx_ctx_seen)
        plugin_ctx = tables.plugin.get(handler)
        if plugin_ctx is None:  # ctx.lua:133-137: created on first use
            plugin_ctx = tables.plugin[handler] = self.api.new_table()
        arg = self.api.new_table(body if body is not None else b"", eof)  # ngx.arg
        self.call, self.body, self.eof = call, body, eof
        shared_filled = ngx_ctx_filled = True  # unknown (the run failed in Python): copy back
        try:
            status, message, shared_filled, ngx_ctx_filled = self.api.run(
                fn, tables.shared, plugin_ctx, tables.ngx_ctx, arg
            )
        finally:
            self.call = None
            if shared_filled or tables.shared_seen:  # an empty table that was empty before: nothing changed
                self._sync_out(tables.shared, shared, tables.shared_seen)
            if ngx_ctx_filled or tables.ngx_ctx_seen:
                self._sync_out(tables.ngx_ctx, nginx_ctx, tables.ngx_ctx_seen)
        if body is not None:
            chunk = arg[1]  # nil or "" drops the chunk; ngx.arg[2] = true ends the body here
            self.body = chunk if isinstance(chunk, bytes) else b"" if chunk is None else _s(str(chunk))
            self.eof = bool(arg[2])
        return status.decode(), self.from_lua(message) if message is not None else None

    def _sync_in(self, py: dict, table, seen: dict) -> None:
        for key, value in py.items():
            if seen.get(key, _MISSING) is not value:
                table[self.to_lua(key)] = self.to_lua(value)
                seen[key] = value
        for key in [k for k in seen if k not in py]:
            table[self.to_lua(key)] = None
            del seen[key]

    def _sync_out(self, table, py: dict, seen: dict) -> None:
        present = set()
        for k, v in list(table.items()):
            if luajit.lua_type(v) in ("function", "userdata", "thread"):
                continue  # Lua-only values: Kong could not hand them to a plugin server either
            key = self.from_lua(k)
            try:
                value = self.from_lua(v)
            except LuaError:
                continue
            py[key] = value
            seen[key] = value
            present.add(key)
        for key in [k for k in seen if k not in present]:
            py.pop(key, None)
            del seen[key]


_MISSING = object()
_LOG_PDK = frozenset({"kong.log.serialize", "kong.log.set_serialize_value"})


def _no_attributes(obj, attr_name, is_setting):
    raise AttributeError("access to Python attributes is not allowed")


def _unfix(value: Any) -> Any:
    """Undo ``fix_mmap``: ``[v]`` → ``v``, ``[]`` → ``true`` (ngx's own shapes)."""
    if isinstance(value, list):
        if not value:
            return True
        if len(value) == 1:
            return value[0]
    return value


def _lua_message(exc: Exception) -> str:
    text = str(exc)
    return text.split("\nstack traceback:", 1)[0]


# -- functions a Lua plugin has that the plugin-server PDK does not (or has differently) -------------------------


def _ngx_exit(state: LuaState, call: Call, status=None, *_):
    """``ngx.exit(status >= 200)``: nginx finalizes the request with that status; one of Kong's ``error_page``
    statuses (nginx_kong.lua:100-102) goes to Kong.handle_error, i.e. kong/error_handlers.lua (first Accept, else
    Content-Type, else error_default_type). Any other status would get nginx's own page, which the emulator does not
    have: it answers Kong's template of the default type for it (docs/emulator.md, known differences)."""
    if call.phase not in ("rewrite", "access", "header_filter", "response"):
        raise LuaError(f"API disabled in the context of {call.phase}_by_lua*")
    status = int(status)
    if status in kong_errors.ERROR_PAGE_STATUSES:
        record_exit(call, kong_errors.handler_error(call.ctx, status))
    else:
        record_exit(call, kong_errors.kong_error(status, None, call.ctx.request_id))


def _get_raw_body(state: LuaState, call: Call, *_):
    """Reached only outside body_filter (the phase error): in body_filter the Lua side (`bootstrap`) runs Kong's own
    buffering over ``ngx.arg``, which a Python callback cannot touch while the chunk's coroutine runs."""
    call.check(frozenset({"body_filter"}))
    return state.body if state.body is not None else b""


def _set_raw_body(state: LuaState, call: Call, body=None, *_):
    call.check(frozenset({"body_filter"}))
    if not isinstance(body, str | bytes):
        raise LuaError("body must be a string")
    state.body = body.encode("utf-8", "surrogateescape") if isinstance(body, str) else body


def _header_name(name: bytes) -> str:
    """ngx.header's key: underscores become dashes (``ngx.header.content_type``)."""
    return name.decode("latin-1").replace("_", "-")


def _header_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _b(v: Any) -> bytes:
    return v.encode("utf-8", "surrogateescape") if isinstance(v, str) else (v or b"")


_SPECIAL = {
    "ngx.exit": _ngx_exit,
    "kong.response.get_raw_body": _get_raw_body,
    "kong.response.set_raw_body": _set_raw_body,
    "ngx.now": lambda s, c, *_: round(time.time(), 3),
    "ngx.time": lambda s, c, *_: int(time.time()),
    "ngx.update_time": lambda s, c, *_: None,
    "ngx.today": lambda s, c, *_: time.strftime("%Y-%m-%d"),
    "ngx.localtime": lambda s, c, *_: time.strftime("%Y-%m-%d %H:%M:%S"),
    "ngx.utctime": lambda s, c, *_: time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
    "ngx.http_time": lambda s, c, t=None, *_: formatdate(t, usegmt=True),
    "ngx.cookie_time": lambda s, c, t=None, *_: time.strftime("%a, %d-%b-%y %H:%M:%S GMT", time.gmtime(t)),
    "ngx.encode_base64": lambda s, c, v=None, no_pad=None, *_: _b64(_b(v), no_pad),
    "ngx.decode_base64": lambda s, c, v=None, *_: _unb64(_b(v)),
    "ngx.md5": lambda s, c, v=None, *_: hashlib.md5(_b(v)).hexdigest(),  # noqa: S324 - ngx.md5 is MD5
    "ngx.md5_bin": lambda s, c, v=None, *_: hashlib.md5(_b(v)).digest(),  # noqa: S324
    "ngx.sha1_bin": lambda s, c, v=None, *_: hashlib.sha1(_b(v)).digest(),  # noqa: S324
    "ngx.crc32_short": lambda s, c, v=None, *_: zlib.crc32(_b(v)),
    "ngx.crc32_long": lambda s, c, v=None, *_: zlib.crc32(_b(v)),
    "ngx.escape_uri": lambda s, c, v=None, *_: quote(_b(v), safe="-._~"),
    "ngx.unescape_uri": lambda s, c, v=None, *_: unquote(_b(v).decode("utf-8", "surrogateescape")),
    "ngx.encode_args": lambda s, c, t=None, *_: urlencode(t if isinstance(t, dict) else {}, doseq=True),
    "ngx.decode_args": lambda s, c, v=None, *_: _decode_args(_b(v).decode("utf-8", "surrogateescape")),
    "ngx.quote_sql_str": lambda s, c, v=None, *_: "'" + _b(v).decode().replace("'", "\\'") + "'",
    "ngx.req.start_time": lambda s, c, *_: c.saved.start_time if c.saved else c.ctx.request.start_time,
    "ngx.worker.pid": lambda s, c, *_: os.getpid(),
    "ngx.worker.id": lambda s, c, *_: c.ctx.worker_id or 0,
    "ngx.worker.count": lambda s, c, *_: s.workers,
}


def _b64(data: bytes, no_pad: Any) -> str:
    text = base64.b64encode(data).decode()
    return text.rstrip("=") if no_pad else text


def _unb64(data: bytes) -> bytes | None:
    try:
        return base64.b64decode(data + b"=" * (-len(data) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None


def _decode_args(query: str) -> dict:
    from kong_emulator.pdk.request import parse_args

    return parse_args(query)
