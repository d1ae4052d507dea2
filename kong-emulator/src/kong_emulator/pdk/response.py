"""``kong.response.*`` (kong/pdk/response.lua, 3.x): terminal exit/error, headers, and the log-snapshot overrides."""

from __future__ import annotations

from typing import Any

from kong_emulator.pdk.base import (
    HEADER_BODY_LOG,
    REWRITE_ACCESS_HEADER,
    Call,
    LuaError,
    check_max,
    cjson_encode,
    fix_mmap,
    header_value,
    headers_table,
    is_num,
    is_str,
    lua_str,
    multi_header_value,
)
from kong_emulator.pdk.request import MAX_REQ_HEADERS, headers_map
from kong_emulator.runloop.context import ExitResponse, Headers
from kong_emulator.tools import kong_errors
from kong_emulator.tools.kong_errors import CONTENT_TYPE_JSON, TemplateMissing, response_type


def _exit_headers(headers: dict | None) -> tuple[Headers, set[str]]:
    out = Headers()
    seen: set[str] = set()
    for name, value in (headers or {}).items():
        values = multi_header_value(name, value)
        lname = lua_str(name).lower().replace("_", "-")
        if lname == "transfer-encoding":
            continue  # Kong: "manually setting Transfer-Encoding. Ignored."
        if values:
            out.set(lua_str(name), values)
        seen.add(lname)
    return out, seen


def _check_status(status: Any, low: int) -> None:
    if not is_num(status):
        raise LuaError("code must be a number")
    if status < low or status > 599:
        raise LuaError(f"code must be a number between {low} and 599")


def exit_(c: Call, status=None, body=None, headers=None, *_):
    """Terminal: record the delayed response (access) / the sent response (rewrite, response)."""
    c.check(REWRITE_ACCESS_HEADER)
    _check_status(status, 100)
    if body is not None and not (is_str(body) or isinstance(body, dict | list)):
        raise LuaError("body must be a nil, string or table")
    if headers is not None and not isinstance(headers, dict | list):
        raise LuaError("headers must be a nil or table")
    hdrs, seen = _exit_headers(headers_table(headers) if headers is not None else None)
    if isinstance(body, dict | list):
        data = cjson_encode(body).encode()
        if "content-type" not in seen:
            hdrs.set("Content-Type", CONTENT_TYPE_JSON)
    else:
        data = (body.encode() if isinstance(body, str) else body) if body is not None else b""
    if "content-length" not in seen:
        hdrs.set("Content-Length", str(len(data)))
    record_exit(c, ExitResponse(int(status), data, hdrs, source="exit"))


def error(c: Call, status=None, message=None, headers=None, *_):
    """Terminal: Kong's error body from its templates, chosen by Content-Type, else Accept, else JSON."""
    c.check(REWRITE_ACCESS_HEADER)
    _check_status(status, 400)
    if isinstance(message, dict | list):
        message = cjson_encode(message)
    if message is not None and not is_str(message):
        raise LuaError("message must be a nil, a string or a table")
    if headers is not None and not isinstance(headers, dict | list):
        raise LuaError("headers must be a nil or table")
    headers = dict(headers_table(headers)) if headers is not None else {}
    content_type = headers.get("Content-Type")
    if isinstance(content_type, list):
        content_type = content_type[0] if content_type else None
    if content_type is None:
        accept = c.ctx.request.headers.get_all("Accept")
        content_type = response_type(", ".join(accept) if accept else None)
    headers["Content-Type"] = content_type
    text = lua_str(message) if message is not None else kong_errors.default_message(int(status))
    try:
        data = kong_errors.render(lua_str(content_type), text, c.ctx.request_id)  # custom error_template_* included
    except TemplateMissing as exc:
        raise LuaError(str(exc)) from None
    hdrs, seen = _exit_headers(headers)
    if "content-length" not in seen:
        hdrs.set("Content-Length", str(len(data)))
    record_exit(c, ExitResponse(int(status), data, hdrs, source="exit"))


def record_exit(c: Call, response: ExitResponse) -> None:
    """``ctx.KONG_EXITED = true`` and the (delayed) response; later access plugins don't run."""
    c.ctx.exit = response
    c.ctx.response.source = response.source


def unexpected_error(ctx, phase: str) -> ExitResponse:
    """What Kong answers for a Lua error out of a plugin's phase handler: 500 "An unexpected error occurred", with
    ``kong.response.get_source()`` "error" (``ctx.KONG_UNEXPECTED``), rendered from Kong's error templates.

    * access: the collecting iterator runs each handler in a coroutine and records a delayed 500
      (kong/init.lua:392-414), flushed as ``kong.response.error(500, "An unexpected error occurred")``
      (init.lua:506-508): the template of ``get_response_type`` over every Accept header, JSON without one, with
      the request id (kong/pdk/response.lua:1141-1160), and Content-Length (response.lua:770-772);
    * rewrite and the buffered ``response`` phase run handlers without a coroutine (init.lua:341, 462): the error
      leaves Kong's phase handler, nginx's ``error_page 500`` runs Kong.handle_error (kong/templates/nginx_kong.lua:102,
      396-407; init.lua:1855-1864) and kong/error_handlers.lua picks the type from Accept, else Content-Type, else
      kong.conf ``error_default_type``, each through ``get_response_type`` (`kong_errors.handler_error`). A natively
      run header_filter gets the same here."""
    if phase != "access":
        return kong_errors.handler_error(ctx, 500)
    response = kong_errors.runloop_error(ctx, 500, kong_errors.UNEXPECTED, source="error")
    response.headers.set("Content-Length", str(len(response.body)))
    return response


def _live_headers(c: Call) -> Headers:
    return c.ctx.response.headers


FILTER_PHASES = frozenset({"header_filter", "body_filter"})


def get_status(c: Call, *_):
    """Override: ``ngx.status`` (kong/pdk/response.lua:202-206); in log the snapshot's status. In header_filter and
    body_filter the status the response carries now, so a ``set_status`` in header_filter (allowed there,
    response.lua:379-394) is what a later header_filter and every body_filter read."""
    if c.saved is not None:
        return c.saved.status
    c.check(HEADER_BODY_LOG)
    ctx = c.ctx
    if c.phase in FILTER_PHASES and ctx.response.status is not None:
        return ctx.response.status
    return ctx.exit.status if ctx.exit else ctx.response.status or ctx.upstream_status or 200


def get_header(c: Call, name=None, *_):
    """Override: first value; in log from the snapshot."""
    if c.saved is None:
        c.check(HEADER_BODY_LOG)
    if not is_str(name):
        raise LuaError("header name must be a string")
    headers = c.saved.response_headers if c.saved is not None else _live_headers(c)
    values = headers.get_all(lua_str(name).replace("_", "-"))
    return values[0] if values else None


def get_headers(c: Call, max_headers=None, *_):
    """Override (StepMultiMap, fix_mmap); in log the snapshot's headers."""
    if c.saved is not None:
        return fix_mmap(headers_map(c.saved.response_headers, MAX_REQ_HEADERS))
    c.check(HEADER_BODY_LOG)
    return fix_mmap(headers_map(_live_headers(c), check_max(max_headers, "max_headers", MAX_REQ_HEADERS)))


def get_source(c: Call, *_):
    """Override: "exit", "error" or "service" from ngx.ctx (the saved clone in log)."""
    if c.saved is not None:
        return c.saved.response_source
    c.check(HEADER_BODY_LOG)
    ctx = c.ctx
    if ctx.exit is not None:
        return ctx.exit.source
    return ctx.response.source or ("service" if ctx.upstream_status is not None else "error")


def set_status(c: Call, status=None, *_):
    c.check(REWRITE_ACCESS_HEADER)
    _check_status(status, 100)
    c.ctx.response.status = int(status)


def set_header(c: Call, name=None, value=None, *_):
    c.check(REWRITE_ACCESS_HEADER)
    values = header_value(name, value)
    if lua_str(name).lower().replace("_", "-") != "transfer-encoding":
        c.ctx.response.headers.set(lua_str(name), values)


def add_header(c: Call, name=None, value=None, *_):
    c.check(REWRITE_ACCESS_HEADER)
    for v in header_value(name, value):
        c.ctx.response.headers.add(lua_str(name), v)


def clear_header(c: Call, name=None, *_):
    c.check(REWRITE_ACCESS_HEADER)
    if not is_str(name):
        raise LuaError("header name must be a string")
    c.ctx.response.headers.clear(lua_str(name))


def set_headers(c: Call, headers=None, *_):
    c.check(REWRITE_ACCESS_HEADER)
    for name, value in sorted(headers_table(headers).items()):
        values = multi_header_value(name, value)
        if lua_str(name).lower().replace("_", "-") == "transfer-encoding":
            continue
        if values:
            c.ctx.response.headers.set(lua_str(name), values)
        else:
            c.ctx.response.headers.clear(lua_str(name))


def get_raw_body(c: Call, *_):
    c.check(frozenset({"body_filter"}))  # external plugins have no body_filter: always a Lua error


FUNCTIONS = {
    "kong.response.exit": exit_,
    "kong.response.error": error,
    "kong.response.get_status": get_status,
    "kong.response.get_header": get_header,
    "kong.response.get_headers": get_headers,
    "kong.response.get_source": get_source,
    "kong.response.set_status": set_status,
    "kong.response.set_header": set_header,
    "kong.response.add_header": add_header,
    "kong.response.clear_header": clear_header,
    "kong.response.set_headers": set_headers,
    "kong.response.get_raw_body": get_raw_body,
}
