"""``kong.ctx.shared``, ``kong.nginx``, ``kong.node``, ``kong.plugin`` and ``kong.log`` (exposed_api overrides
included: ctx.shared, nginx.get_ctx/set_ctx/get_var/req_start_time and log.serialize read the log snapshot)."""

from __future__ import annotations

import os

from kong_emulator.pdk.base import TIMER_ERROR, Call, LuaError, cjson_encode, is_str, lua_str, to_lua, tostring

LOG_LEVELS = ("debug", "info", "notice", "warn", "err", "crit", "alert", "emerg")


def _shared(c: Call) -> dict:
    return c.saved.shared if c.saved is not None else c.ctx.shared


def shared_get(c: Call, key=None, *_):
    return _shared(c).get(lua_str(key) if is_str(key) else key)


def shared_set(c: Call, key=None, value=None, *_):
    """A copy through msgpack → Lua: nil deletes, empty tables come back as ``[]`` (§4.3)."""
    if key is None:
        raise LuaError("table index is nil")
    key = lua_str(key) if is_str(key) else key
    if value is None:
        _shared(c).pop(key, None)
    else:
        _shared(c)[key] = to_lua(value)


def _nginx_ctx(c: Call) -> dict:
    return c.saved.nginx_ctx if c.saved is not None else c.ctx.nginx_ctx


def get_ctx(c: Call, key=None, *_):
    return _nginx_ctx(c).get(lua_str(key) if is_str(key) else key)


def set_ctx(c: Call, key=None, value=None, *_):
    key = lua_str(key) if is_str(key) else key
    if value is None:
        _nginx_ctx(c).pop(key, None)
    else:
        _nginx_ctx(c)[key] = to_lua(value)


def get_var(c: Call, name=None, *_):
    """Override: ``ngx.var[name]`` (a Lua error in the log timer, which has no request)."""
    if c.phase == "log":
        raise LuaError(TIMER_ERROR)
    if not is_str(name):
        raise LuaError("bad argument #1 to '?' (string expected)")
    return nginx_var(c, lua_str(name).lower())


def nginx_var(c: Call, name: str):
    """The common nginx variables, from the request context."""
    ctx, req = c.ctx, c.ctx.request
    if name.startswith("http_"):
        return req.headers.get(name[5:].replace("_", "-"))
    if name.startswith("arg_"):
        from kong_emulator.pdk.request import parse_args

        value = parse_args(req.raw_query).get(name[4:])
        return value[0] if isinstance(value, list) else (value if isinstance(value, str) else None)
    query = "?" + req.raw_query if req.raw_query else ""
    table = {
        "request_method": req.method,
        "scheme": req.scheme,
        "host": req.host,
        "server_port": str(req.port),
        "uri": req.path,
        "request_uri": req.raw_path + query,
        "args": req.raw_query or None,
        "is_args": "?" if req.raw_query else "",
        "query_string": req.raw_query or None,
        "remote_addr": req.forwarded_ip,
        "realip_remote_addr": req.client_ip,
        "remote_port": str(req.client_port),
        "binary_remote_addr": None,
        "server_protocol": f"HTTP/{req.http_version:g}" if req.http_version != 2 else "HTTP/2.0",
        "request_length": str(len(req.body)),
        "kong_request_id": ctx.request_id,
        "request_id": ctx.request_id,
        "upstream_uri": ctx.upstream_uri or (ctx.upstream.path if ctx.upstream else None),
        "upstream_scheme": ctx.upstream.scheme if ctx.upstream else None,
        "upstream_host": ctx.upstream.host if ctx.upstream else None,
        "upstream_status": str(ctx.upstream_status) if ctx.upstream_status else None,
        "content_type": req.headers.get("Content-Type"),
        "content_length": req.headers.get("Content-Length"),
        "hostname": c.env.hostname,
        "pid": str(os.getpid()),
    }
    return table.get(name)


def req_start_time(c: Call, *_):
    """Override: ``ngx.req.start_time()`` in seconds, or the saved one in log."""
    return c.saved.start_time if c.saved is not None else c.ctx.request.start_time


def get_subsystem(c: Call, *_):
    return "http"


def get_tls1_version_str(c: Call, *_):
    return None  # the emulator terminates no TLS


def node_get_id(c: Call, *_):
    return c.env.node_id


def node_get_hostname(c: Call, *_):
    return c.env.hostname


def node_get_memory_stats(c: Call, *_):
    return {"workers_lua_vms": [{"http_allocated_gc": 0, "pid": os.getpid()}], "lua_shared_dicts": {}}


def plugin_get_id(c: Call, *_):
    """``ngx.ctx.plugin_id``: the plugin entity's id."""
    plugin = c.ctx.current_plugin
    return plugin.id if plugin else None


def serialize(c: Call, *_):
    """Override: a **JSON string** (``cjson.encode``); the snapshot's record in log, a Lua error elsewhere."""
    if c.phase != "log":
        raise LuaError(f"function cannot be called in {c.phase} phase (only in: log)")
    record = c.saved.serialized if c.saved is not None else {"request": {"id": c.ctx.request_id}}
    return cjson_encode(record)


def _logger(level: str):
    def log_fn(c: Call, *args):
        c.log(level, "".join(tostring(a) for a in args))

    log_fn.__name__ = f"log_{level}"
    return log_fn


def set_serialize_value(c: Call, key=None, value=None, *_):
    if not is_str(key):
        raise LuaError("key must be a string")
    c.ctx.nginx_ctx.setdefault("serialize_values", []).append((lua_str(key), to_lua(value)))


FUNCTIONS = {
    "kong.ctx.shared.get": shared_get,
    "kong.ctx.shared.set": shared_set,
    "kong.nginx.get_ctx": get_ctx,
    "kong.nginx.set_ctx": set_ctx,
    "kong.nginx.get_var": get_var,
    "kong.nginx.req_start_time": req_start_time,
    "kong.nginx.get_subsystem": get_subsystem,
    "kong.nginx.get_tls1_version_str": get_tls1_version_str,
    "kong.node.get_id": node_get_id,
    "kong.node.get_hostname": node_get_hostname,
    "kong.node.get_memory_stats": node_get_memory_stats,
    "kong.plugin.get_id": plugin_get_id,
    "kong.log.serialize": serialize,
    "kong.log.set_serialize_value": set_serialize_value,
    "kong.log": _logger("notice"),
    "kong.log.inspect": _logger("debug"),
    **{f"kong.log.{level}": _logger(level) for level in LOG_LEVELS},
}
