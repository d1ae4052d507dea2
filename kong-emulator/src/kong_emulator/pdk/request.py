"""``kong.request.*`` (kong/pdk/request.lua, 3.x) plus the exposed_api overrides that read the log snapshot."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote_plus

from kong_emulator.pdk.base import (
    REQUEST_PHASES,
    Call,
    LuaError,
    check_max,
    fix_mmap,
    is_str,
    lua_str,
)
from kong_emulator.plugin_servers.rpc import Bin
from kong_emulator.router.traditional import normalize_path
from kong_emulator.runloop.context import MAX_REQ_HEADERS, Headers, nginx_http_var

MAX_URI_ARGS = 100  # lua_max_uri_args


def _name(name: Any) -> str:
    if not is_str(name):
        raise LuaError("header name must be a string")
    return lua_str(name).replace("_", "-")  # ngx.var["http_" .. replace_dashes(name)]


def headers_map(headers: Headers, max_headers: int) -> dict[str, Any]:
    """``ngx.req.get_headers(max)``: lower-case names, a string or an array per name, first ``max`` lines."""
    out: dict[str, Any] = {}
    for k, v in headers.items()[:max_headers]:
        k = k.lower()
        prev = out.get(k)
        if prev is None:
            out[k] = v
        elif isinstance(prev, list):
            prev.append(v)
        else:
            out[k] = [prev, v]
    return out


def parse_args(raw_query: str, max_args: int = MAX_URI_ARGS) -> dict[str, Any]:
    """``ngx.req.get_uri_args``: ``k=v`` → str, bare ``k`` → true, repeats → array, empty keys dropped."""
    out: dict[str, Any] = {}
    count = 0
    for part in raw_query.split("&"):
        if not part:
            continue
        count += 1
        if count > max_args:
            break
        key, eq, value = part.partition("=")
        key = unquote_plus(key, errors="surrogateescape")
        if not key:
            continue
        val: Any = unquote_plus(value, errors="surrogateescape") if eq else True
        prev = out.get(key)
        if prev is None:
            out[key] = val
        elif isinstance(prev, list):
            prev.append(val)
        else:
            out[key] = [prev, val]
    return out


def get_header(c: Call, name=None, *_):
    """Override: first value; in log from the snapshot's request headers."""
    if c.saved is not None:
        if not is_str(name):
            return None
        values = c.saved.request_headers.get_all(lua_str(name).replace("_", "-"))
        return values[0] if values else None
    if c.phase == "log" or c.phase not in REQUEST_PHASES:
        c.need_request()  # raises
    return nginx_http_var(c.ctx.request.headers, name.replace("_", "-") if type(name) is str else _name(name))


def get_headers(c: Call, max_headers=None, *_):
    """Override (StepMultiMap, fix_mmap); in log the snapshot's headers (``ngx.req.get_headers()``)."""
    if c.saved is not None:
        return fix_mmap(headers_map(c.saved.request_headers, MAX_REQ_HEADERS))
    c.need_request()
    limit = check_max(max_headers, "max_headers", MAX_REQ_HEADERS)
    return fix_mmap(headers_map(c.ctx.request.headers, limit))


def get_uri_captures(c: Call, *_):
    """Override: reads ngx.ctx (the saved clone in log); empty parts pack as ``[]``."""
    c.check(frozenset({"rewrite", "access", "header_filter", "response", "body_filter", "log", "admin_api"}))
    caps = c.ctx.captures or {}
    unnamed = {int(k): v for k, v in (caps.get("unnamed") or {}).items()}
    named = dict(caps.get("named") or {})
    return {"unnamed": unnamed or [], "named": named or []}


def _req(c: Call):
    c.need_request()
    return c.ctx.request


def get_scheme(c, *_):
    return _req(c).scheme


def get_host(c, *_):
    return _req(c).host


def get_port(c, *_):
    return _req(c).port


def _forwarded(c: Call, header: str) -> str | None:
    req = _req(c)
    if not c.env.is_trusted(req.client_ip):
        return None
    value = nginx_http_var(req.headers, header)  # _REQUEST.get_header, as Kong's get_forwarded_* use
    return value.split(",")[0].strip() if value else None


def get_forwarded_scheme(c, *_):
    return (_forwarded(c, "X-Forwarded-Proto") or _req(c).scheme).lower()


def get_forwarded_host(c, *_):
    host = _forwarded(c, "X-Forwarded-Host")
    return host.split(":")[0].lower() if host else _req(c).host


def get_forwarded_port(c, *_):
    port = _forwarded(c, "X-Forwarded-Port")
    return int(port) if port and port.isdigit() else _req(c).port


def get_forwarded_path(c, *_):
    return _forwarded(c, "X-Forwarded-Path") or _req(c).raw_path


def get_forwarded_prefix(c, *_):
    return _forwarded(c, "X-Forwarded-Prefix")


def get_http_version(c, *_):
    v = _req(c).http_version
    return int(v) if float(v).is_integer() else v  # Lua numbers: 2.0 packs as the integer 2


def get_method(c, *_):
    return _req(c).method


def get_path(c, *_):
    """request.lua:415-417 ``normalize(get_raw_path(), true)`` (kong/tools/uri.lua), not nginx's ``$uri``."""
    return normalize_path(_req(c).raw_path, True)


def get_raw_path(c, *_):
    return _req(c).raw_path


def get_path_with_query(c, *_):
    """request.lua:457-460 ``var.request_uri``: as sent, neither decoded nor normalized."""
    req = _req(c)
    return req.request_uri or req.raw_path + ("?" + req.raw_query if req.raw_query else "")


def get_raw_query(c, *_):
    return _req(c).raw_query or ""


def get_query_arg(c, name=None, *_):
    if not is_str(name):
        raise LuaError("query argument name must be a string")
    value = parse_args(_req(c).raw_query).get(lua_str(name))
    return value[0] if isinstance(value, list) else value


def get_query(c, max_args=None, *_):
    req = _req(c)
    return fix_mmap(parse_args(req.raw_query, check_max(max_args, "max_args", MAX_URI_ARGS)))


def get_raw_body(c, *_):
    """fix_raw: the body as msgpack bin; ``""`` when there is none."""
    return Bin(_req(c).body or b"")


def get_start_time(c, *_):
    """Milliseconds (``ngx.ctx.KONG_PROCESSING_START``); it lives in ngx.ctx, so it works in log too."""
    c.check(frozenset({"rewrite", "access", "header_filter", "response", "body_filter", "log", "admin_api"}))
    ms = c.ctx.request.start_time * 1000
    return int(ms) if float(ms).is_integer() else ms


FUNCTIONS = {
    "kong.request.get_header": get_header,
    "kong.request.get_headers": get_headers,
    "kong.request.get_uri_captures": get_uri_captures,
    "kong.request.get_scheme": get_scheme,
    "kong.request.get_host": get_host,
    "kong.request.get_port": get_port,
    "kong.request.get_forwarded_scheme": get_forwarded_scheme,
    "kong.request.get_forwarded_host": get_forwarded_host,
    "kong.request.get_forwarded_port": get_forwarded_port,
    "kong.request.get_forwarded_path": get_forwarded_path,
    "kong.request.get_forwarded_prefix": get_forwarded_prefix,
    "kong.request.get_http_version": get_http_version,
    "kong.request.get_method": get_method,
    "kong.request.get_path": get_path,
    "kong.request.get_raw_path": get_raw_path,
    "kong.request.get_path_with_query": get_path_with_query,
    "kong.request.get_raw_query": get_raw_query,
    "kong.request.get_query_arg": get_query_arg,
    "kong.request.get_query": get_query,
    "kong.request.get_raw_body": get_raw_body,
    "kong.request.get_start_time": get_start_time,
}
