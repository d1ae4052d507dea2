"""``kong.service.*``, ``kong.service.request.*`` and ``kong.service.response.*`` (kong/pdk/service*.lua, 3.x).

In Kong ``kong.service.request.set_header`` & co. change the nginx request itself (``ngx.req.set_header``), so
later ``kong.request.get_header`` calls see the change: the emulator writes both the client request headers and
the upstream request.
"""

from __future__ import annotations

from urllib.parse import quote

from kong_emulator.pdk.base import (
    HEADER_BODY_LOG,
    REWRITE_ACCESS,
    REWRITE_ACCESS_BALANCER,
    Call,
    LuaError,
    check_max,
    fix_mmap,
    header_value,
    headers_table,
    is_num,
    is_str,
    lua_str,
    multi_header_value,
    tostring,
)
from kong_emulator.pdk.request import MAX_REQ_HEADERS, headers_map
from kong_emulator.plugin_servers.rpc import Bin
from kong_emulator.runloop.context import UpstreamRequest

_METHODS = frozenset(
    "GET HEAD PUT POST DELETE OPTIONS MKCOL COPY MOVE PROPFIND PROPPATCH LOCK UNLOCK PATCH TRACE".split()
)


def upstream(c: Call) -> UpstreamRequest:
    """The upstream request; before routing (rewrite) one is made from the client request."""
    ctx = c.ctx
    if ctx.upstream is None:
        req = ctx.request
        ctx.upstream = UpstreamRequest(req.method, req.path, req.raw_query, req.headers.copy(), scheme=req.scheme)
    return ctx.upstream


def _string(value, what: str) -> str:
    if not is_str(value):
        raise LuaError(f"{what} must be a string")
    return lua_str(value)


def set_target(c: Call, host=None, port=None, *_):
    c.check(frozenset({"access"}))
    host = _string(host, "host")
    if not is_num(port) or int(port) != port or not 0 < port <= 65535:
        raise LuaError(f"port must be an integer between 0 and 65535: given {tostring(port)}")
    up = upstream(c)
    up.host, up.port = host, int(port)


def set_scheme(c: Call, scheme=None, *_):
    c.check(REWRITE_ACCESS)
    scheme = _string(scheme, "scheme")
    if scheme not in ("http", "https"):
        raise LuaError(f"invalid scheme: {scheme}")
    upstream(c).scheme = scheme


def set_path(c: Call, path=None, *_):
    c.check(REWRITE_ACCESS)
    path = _string(path, "path")
    if not path.startswith("/"):
        raise LuaError("path must start with /")
    upstream(c).path = path


def set_raw_query(c: Call, query=None, *_):
    c.check(REWRITE_ACCESS)
    upstream(c).raw_query = _string(query, "query")


def set_method(c: Call, method=None, *_):
    c.check(REWRITE_ACCESS)
    method = _string(method, "method")
    if method not in _METHODS:
        raise LuaError(f"invalid method: {method}")
    upstream(c).method = method


def set_query(c: Call, args=None, *_):
    """``encode_args`` with sorted keys: ``true`` → a bare flag, arrays → repeated keys."""
    c.check(REWRITE_ACCESS)
    if not isinstance(args, dict | list):
        raise LuaError("args must be a table")
    parts = []
    for key, value in sorted((args or {}).items() if isinstance(args, dict) else []):
        for v in value if isinstance(value, list) else [value]:
            k = quote(tostring(key), safe="")
            if v is True:
                parts.append(k)
            elif v is not False:
                parts.append(f"{k}={quote(tostring(v), safe='')}")
    upstream(c).raw_query = "&".join(parts)


def set_header(c: Call, name=None, value=None, *_):
    c.check(REWRITE_ACCESS_BALANCER)
    values = header_value(name, value)
    name = lua_str(name)
    for headers in _header_targets(c):
        headers.set(name, values)


def add_header(c: Call, name=None, value=None, *_):
    c.check(REWRITE_ACCESS_BALANCER)
    values = header_value(name, value)
    name = lua_str(name)
    for headers in _header_targets(c):
        for v in values:
            headers.add(name, v)


def clear_header(c: Call, name=None, *_):
    c.check(REWRITE_ACCESS_BALANCER)
    name = _string(name, "header name")
    for headers in _header_targets(c):
        headers.clear(name)


def set_headers(c: Call, headers=None, *_):
    c.check(REWRITE_ACCESS_BALANCER)
    for name, value in sorted(headers_table(headers).items()):
        values = multi_header_value(name, value)
        for target in _header_targets(c):
            if values:
                target.set(lua_str(name), values)
            else:
                target.clear(lua_str(name))


def _header_targets(c: Call):
    up = upstream(c)
    return (c.ctx.request.headers, up.headers) if up.headers is not c.ctx.request.headers else (up.headers,)


def set_raw_body(c: Call, body=None, *_):
    c.check(REWRITE_ACCESS)
    if not is_str(body):
        raise LuaError("body must be a string")
    data = body.encode() if isinstance(body, str) else bytes(body)
    up = upstream(c)
    up.body = data
    up.headers.set("Content-Length", str(len(data)))


def get_status(c: Call, *_):
    c.need_request(HEADER_BODY_LOG)
    return c.ctx.upstream_status


def get_headers(c: Call, max_headers=None, *_):
    c.need_request(HEADER_BODY_LOG)
    limit = check_max(max_headers, "max_headers", MAX_REQ_HEADERS)
    if c.ctx.upstream_headers is None:
        return fix_mmap({})
    return fix_mmap(headers_map(c.ctx.upstream_headers, limit))


def get_header(c: Call, name=None, *_):
    c.need_request(HEADER_BODY_LOG)
    name = _string(name, "header name").replace("_", "-")
    if c.ctx.upstream_headers is None:
        return None
    values = c.ctx.upstream_headers.get_all(name)
    return values[0] if values else None


def get_raw_body(c: Call, *_):
    """The buffered service body (response phase only, as the ``response`` handler turns buffering on)."""
    c.need_request(HEADER_BODY_LOG)
    if c.phase != "response":
        return None
    return Bin(c.ctx.upstream_body or b"")


FUNCTIONS = {
    "kong.service.set_target": set_target,
    "kong.service.request.set_scheme": set_scheme,
    "kong.service.request.set_path": set_path,
    "kong.service.request.set_raw_query": set_raw_query,
    "kong.service.request.set_method": set_method,
    "kong.service.request.set_query": set_query,
    "kong.service.request.set_header": set_header,
    "kong.service.request.add_header": add_header,
    "kong.service.request.clear_header": clear_header,
    "kong.service.request.set_headers": set_headers,
    "kong.service.request.set_raw_body": set_raw_body,
    "kong.service.response.get_status": get_status,
    "kong.service.response.get_headers": get_headers,
    "kong.service.response.get_header": get_header,
    "kong.service.response.get_raw_body": get_raw_body,
}
