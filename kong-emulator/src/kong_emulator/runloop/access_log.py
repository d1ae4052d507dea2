"""nginx's proxy access log as Kong configures it (kong/templates/nginx_kong.lua:66-69, 108-116).

``proxy_access_log = <path>`` logs with Kong's ``kong_log_format``, whose ``"$request"`` is the whole request line --
query string included (an ``?access_token=`` too); ``proxy_access_log = <path> <name>`` logs with the format
``<name>`` that ``nginx_http_log_format = <name> '<format>'`` defines (kong/cmd/utils/prefix_handler.lua:261-271);
``off`` logs nothing. The emulator renders the same line from the same variables and writes it to its own log
(logger ``kong_emulator.access``) instead of the path. Values are escaped as nginx's default ``escape=default``
does (``"``, ``\\``, control and non-ASCII bytes as ``\\xHH``); an empty value is ``-``.
"""

from __future__ import annotations

import re
import shlex
import time
from collections.abc import Callable, Mapping

from kong_emulator.pdk.request import nginx_http_var
from kong_emulator.runloop.context import RequestContext

KONG_LOG_FORMAT = (
    '$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent '
    '"$http_referer" "$http_user_agent" kong_request_id: "$kong_request_id"'
)
_VAR = re.compile(r"\$(?:\{(\w+)\}|(\w+))")
_UNSAFE = re.compile(rb'["\\\x00-\x1f\x7f-\xff]')


class AccessLog:
    """The proxy access log of one kong.conf: ``line(ctx, status, size)`` → the text nginx would write, or None."""

    def __init__(self, conf_raw: Mapping[str, str]) -> None:
        setting = str(conf_raw.get("proxy_access_log", "logs/access.log")).strip()
        self.enabled = setting != "off"
        parts = setting.split()
        self.format = KONG_LOG_FORMAT
        if len(parts) > 1:
            self.format = custom_formats(conf_raw).get(parts[1], KONG_LOG_FORMAT)
        # the format as (literal text, variable getter or None) pairs, each getter looked up once here
        self._parts = [
            (literal, None if var is None else VARIABLES.get(var) or _http_or_unknown(var))
            for literal, var in _compile(self.format)
        ]

    def line(self, ctx: RequestContext, status: int, body_size: int) -> str | None:
        if not self.enabled:
            return None
        out = []
        for literal, get in self._parts:
            out.append(literal)
            if get is not None:
                value = get(ctx, status, body_size)
                out.append(escape(value) if value else "-")
        return "".join(out)


def custom_formats(conf_raw: Mapping[str, str]) -> dict[str, str]:
    """``nginx_http_log_format = name 'part' 'part'...``: nginx joins the quoted parts."""
    value = conf_raw.get("nginx_http_log_format")
    if not value:
        return {}
    tokens = shlex.split(str(value))
    return {tokens[0]: "".join(tokens[1:])} if tokens else {}


def escape(value: str) -> str:
    if value.isascii() and value.isprintable() and '"' not in value and "\\" not in value:
        return value
    raw = value.encode("utf-8", "surrogateescape")
    return _UNSAFE.sub(lambda m: b"\\x%02X" % m.group(0)[0], raw).decode("ascii")


_clock: list = [0, ""]  # (second, its $time_local text)


def _time_local() -> str:
    now = int(time.time())
    if _clock[0] != now:
        _clock[0], _clock[1] = now, time.strftime("%d/%b/%Y:%H:%M:%S %z", time.localtime(now))
    return _clock[1]


def _compile(fmt: str) -> list[tuple[str, str | None]]:
    parts: list[tuple[str, str | None]] = []
    pos = 0
    for m in _VAR.finditer(fmt):
        parts.append((fmt[pos : m.start()], m.group(1) or m.group(2)))
        pos = m.end()
    parts.append((fmt[pos:], None))
    return parts


def _request_uri(ctx: RequestContext, *_) -> str:
    req = ctx.request
    return req.raw_path + ("?" + req.raw_query if req.raw_query else "")


def _request_line(ctx: RequestContext, *_) -> str:
    return f"{ctx.request.method} {_request_uri(ctx)} HTTP/{_version(ctx)}"


def _version(ctx: RequestContext) -> str:
    v = ctx.request.http_version
    return str(int(v)) if float(v).is_integer() and v >= 2 else f"{v:.1f}"


def _header(name: str) -> Callable[..., str]:
    def get(ctx: RequestContext, *_) -> str:
        return nginx_http_var(ctx.request.headers, name) or ""  # the same lookup as $http_<name>

    return get


def _http_or_unknown(var: str) -> Callable[..., str]:
    if var.startswith("http_"):
        return _header(var[5:])
    return lambda *_: ""


VARIABLES: dict[str, Callable[..., str]] = {
    "remote_addr": lambda ctx, *_: ctx.request.forwarded_ip,
    "remote_user": lambda *_: "",
    "time_local": lambda *_: _time_local(),
    "request": _request_line,
    "request_method": lambda ctx, *_: ctx.request.method,
    "request_uri": lambda ctx, *_: (
        ctx.request.raw_path + ("?" + ctx.request.raw_query if ctx.request.raw_query else "")
    ),
    "uri": lambda ctx, *_: ctx.request.path,
    "args": lambda ctx, *_: ctx.request.raw_query,
    "query_string": lambda ctx, *_: ctx.request.raw_query,
    "server_protocol": lambda ctx, *_: f"HTTP/{_version(ctx)}",
    "status": lambda ctx, status, size: str(status),
    "body_bytes_sent": lambda ctx, status, size: str(size),
    "request_time": lambda ctx, *_: f"{ctx.latencies.get('request', 0) / 1000:.3f}",
    "kong_request_id": lambda ctx, *_: ctx.request_id,
}
