"""Responses Kong itself produces (no route, upstream failures, plugin crashes), with Kong 3.x's exact bodies.

Kong renders these from its error templates (`kong/tools/http.lua`, `kong/error_handlers.lua`); since 3.5 the JSON
template carries the request id. Every template is used as `string.format(template, message, request_id)`: those
are the only two values a template gets (Kong's own HTML/plain/XML templates use both as well).

kong.conf `error_template_html|json|xml|plain` (default NONE) replace Kong's template of that format
(`custom_error_templates` in kong/tools/http.lua): each file is read once, on first use; a missing or unreadable file
is logged ("failed reading the custom <format> error template: <err>") and Kong's own template is used. The
Content-Type stays the format's (`application/json; charset=utf-8` for a JSON template): a template cannot change it.
`configure(conf)` installs a configuration's templates (the proxy calls it at start, as Kong reads kong.configuration).

The type: `kong_error` (kong.response.error: every Accept header) and `error_handler` (kong/error_handlers.lua: the
first Accept header, else Content-Type, else ``error_default_type``) both go through `response_type`, Kong's
``get_response_type`` with its q-values -- never `mime_type` of a whole header.
"""

from __future__ import annotations

import json
import logging
import os
import re

from kong_emulator.runloop.context import ExitResponse, Headers, nginx_http_var

log = logging.getLogger("kong_emulator.kong")

NO_ROUTE = "no Route matched with those values"
BAD_GATEWAY = "An invalid response was received from the upstream server"
GATEWAY_TIMEOUT = "The upstream server is timing out"
UNEXPECTED = "An unexpected error occurred"
NO_PEER = "failure to get a peer from the ring-balancer"
NAME_RESOLUTION = "name resolution failed"

# kong/tools/http.lua get_default_exit_body / HTTP_MESSAGES
DEFAULT_MESSAGES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    406: "Not acceptable",
    407: "Proxy authentication required",
    408: "Request timeout",
    409: "Conflict",
    410: "Gone",
    411: "Length required",
    412: "Precondition failed",
    413: "Payload too large",
    414: "URI too long",
    415: "Unsupported media type",
    416: "Range not satisfiable",
    417: "Expectation failed",
    418: "I'm a teapot",
    421: "Misdirected request",
    422: "Unprocessable entity",
    423: "Locked",
    424: "Failed dependency",
    425: "Too early",
    426: "Upgrade required",
    428: "Precondition required",
    429: "Too many requests",
    431: "Request header fields too large",
    451: "Unavailable for legal reasons",
    494: "Request header or cookie too large",
    500: UNEXPECTED,
    501: "Not implemented",
    502: BAD_GATEWAY,
    503: "The upstream server is currently unavailable",
    504: GATEWAY_TIMEOUT,
    505: "HTTP version not supported",
    506: "Variant also negotiates",
    507: "Insufficient storage",
    508: "Loop detected",
    510: "Not extended",
    511: "Network authentication required",
}

JSON_TYPE = "application/json; charset=utf-8"
GRPC_TYPE = "application/grpc"
# nginx_kong.lua:100-102: the statuses nginx hands to /kong_error_handler (error_handlers.lua:13-28 BODIES has each)
ERROR_PAGE_STATUSES = frozenset({400, 404, 405, 408, 411, 412, 413, 414, 417, 494, 500, 502, 503, 504})
TEMPLATE_FORMATS = ("html", "json", "xml", "plain")
# get_error_template: the format of a MIME type, bare or with Kong's charset
_FORMAT_OF = {
    "application/json": "json",
    "application/json; charset=utf-8": "json",
    "text/html": "html",
    "text/html; charset=utf-8": "html",
    "application/xml": "xml",
    "application/xml; charset=utf-8": "xml",
    "text/plain": "plain",
    "text/plain; charset=utf-8": "plain",
}


class TemplateMissing(ValueError):
    """No template for a content type: a Lua error in Kong (`fmt(nil, ...)`)."""


CONTENT_TYPE_JSON = "application/json; charset=utf-8"

# kong/tools/http.lua:382-391 MIME_TYPES; application/grpc is "" -- a true value in Lua, so it is a type, not "none"
_MIME = {
    "application/grpc": "",
    "text/html": "text/html; charset=utf-8",
    "application/json": CONTENT_TYPE_JSON,
    "text/plain": "text/plain; charset=utf-8",
    "application/xml": "application/xml; charset=utf-8",
    "application": CONTENT_TYPE_JSON,
    "text": "text/plain; charset=utf-8",
    "default": CONTENT_TYPE_JSON,
}
# http.lua:393-422 ERROR_TEMPLATES
_TEMPLATES = {
    "application/grpc": "",
    "application/json": '{\n  "message":"%s",\n  "request_id":"%s"\n}',
    "text/html": (
        '<!doctype html>\n<html>\n  <head>\n    <meta charset="utf-8">\n    <title>Error</title>\n  </head>\n'
        "  <body>\n    <h1>Error</h1>\n    <p>%s.</p>\n    <p>request_id: %s</p>\n  </body>\n</html>\n"
    ),
    "text/plain": "%s\nrequest_id: %s\n",
    "application/xml": (
        '<?xml version="1.0" encoding="UTF-8"?>\n<error>\n  <message>%s</message>\n  <requestid>%s</requestid>\n'
        "</error>\n"
    ),
}
_ACCEPT = re.compile(
    r"""((?:[a-z0-9][a-z0-9\-!\#$&^_+.]+|\*) / (?:[a-z0-9][a-z0-9\-!\#$&^_+.]+|\*))
        (?: \s*;\s* q = ( 1(?:\.0{0,3}|) | 0(?:\.\d{0,3}|) ) | \s*;\s* [a-z0-9][a-z0-9\-!\#$&^_+.]+ (?:=[^;]*|) )*""",
    re.X | re.I,
)


def mime_type(content: str) -> str:
    """``get_mime_type(content, use_default=true)`` (http.lua:491-515): a type Kong knows, ``type/*`` by its major
    type, else JSON; application/grpc is ""."""
    content = content.strip().split(";")[0]
    entries = content.split("/")
    found = None
    if len(entries) > 1:
        if entries[1] == "*":
            found = _MIME["default"] if entries[0] == "*" else _MIME.get(entries[0])
        else:
            found = _MIME.get(content)
    return found if found is not None else _MIME["default"]


def response_type(accept: str | None) -> str:
    """``get_response_type`` (http.lua:453-488): of the comma-separated entries that match the media-range pattern,
    the first with the highest q (above 0) names the type, through `mime_type`; JSON when none does."""
    content_type = _MIME["default"]
    if accept is None:
        return content_type
    best = 0.0
    for value in accept.split(","):
        m = _ACCEPT.match(value.strip())
        if m:
            q = float(m.group(2)) if m.group(2) else 1.0
            if q > best:
                best = q
                content_type = mime_type(m.group(1))
    return content_type


def builtin_template(content_type: str) -> str:
    """http.lua:518-537: the template of a bare type or of its MIME_TYPES value ("" is application/grpc's)."""
    for mime, template in _TEMPLATES.items():
        if content_type in (mime, _MIME[mime]):
            return template
    raise TemplateMissing(f"bad argument #1 to 'fmt' (string expected, got nil): no template for {content_type}")


_template_paths: dict[str, str | None] = {}
_template_cache: dict[str, str | None] = {}
_default_type = "text/plain"


def configure(conf) -> None:
    """Install kong.conf's `error_template_*` and `error_default_type` (a KongConf, or anything with `raw`)."""
    global _default_type
    raw = getattr(conf, "raw", None) or {}
    _template_paths.clear()
    _template_cache.clear()
    for fmt in TEMPLATE_FORMATS:
        value = raw.get(f"error_template_{fmt}")
        _template_paths[fmt] = None if value in (None, "", "NONE") else str(value)
    _default_type = raw.get("error_default_type") or "text/plain"


def default_type() -> str:
    """kong.configuration.error_default_type."""
    return _default_type


def custom_template(fmt: str) -> str | None:
    """`custom_error_templates[fmt]`: the file's text, read once; None when unset or unreadable."""
    if fmt in _template_cache:
        return _template_cache[fmt]
    path = _template_paths.get(fmt)
    template = None
    if path is not None:
        if not os.path.exists(path):
            err = "file not found"
        else:
            try:
                with open(path, encoding="utf-8", errors="surrogateescape", newline="") as fh:
                    template, err = fh.read(), None
            except OSError as exc:
                err = exc.strerror or str(exc)
        if template is None:
            log.error("[kong] failed reading the custom %s error template: %s", fmt, err)
    _template_cache[fmt] = template
    return template


def error_template(content_type: str) -> str:
    """`get_error_template(mime_type)`: the custom template of that format, else Kong's own."""
    fmt = _FORMAT_OF.get(content_type)
    custom = custom_template(fmt) if fmt else None
    return custom if custom is not None else builtin_template(content_type)


_LUA_SPEC = re.compile(r"%(?:%|[-+ #0]*\d*(?:\.\d+)?([sdq])|(.?))", re.S)


def lua_format(template: str, *args: str) -> str:
    """Lua's `string.format` for what error templates hold (`%s`, `%d`, `%q`, `%%`): extra arguments are ignored
    (Lua does), a missing one is Lua's "bad argument #n to 'format' (no value)"."""
    values = iter(args)
    index = 1

    def one(m: re.Match) -> str:
        nonlocal index
        if m.group(0) == "%%":
            return "%"
        if m.group(1) is None:
            raise ValueError(f"invalid option '%{m.group(2)}' to 'format'")
        index += 1
        try:
            value = next(values)
        except StopIteration:
            raise ValueError(f"bad argument #{index} to 'format' (no value)") from None
        if m.group(1) == "q":
            return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\\n") + '"'
        spec = m.group(0)
        if m.group(1) == "d":
            try:
                return spec % int(value)
            except ValueError:
                raise ValueError(f"bad argument #{index} to 'format' (number expected, got string)") from None
        return spec % str(value)

    return _LUA_SPEC.sub(one, template)


def render(content_type: str, message: str, request_id: str) -> bytes:
    """`fmt(get_error_template(mime_type), message, request_id)`; a custom template Lua could not format is logged
    and Kong's own used (real Kong would fail that error response itself)."""
    template = error_template(content_type)
    try:
        return lua_format(template, message, request_id).encode("utf-8", "surrogateescape")
    except ValueError as exc:
        log.error("[kong] custom error template for %s: %s", content_type, exc)
        return (builtin_template(content_type) % (message, request_id)).encode()


def default_message(status: int) -> str:
    """pdk/response.lua:122-181 get_http_error_message (kong.response.error without a message)."""
    return DEFAULT_MESSAGES.get(status, f"The upstream server responded with {status}")


def handler_message(status: int) -> str:
    """error_handlers.lua:13-47 get_body: BODIES has the error_page statuses, with the texts of DEFAULT_MESSAGES."""
    return DEFAULT_MESSAGES[status] if status in ERROR_PAGE_STATUSES else f"The upstream server responded with {status}"


def kong_error(
    status: int, message: str | None, request_id: str, accept: str | None = None, *, source: str = "error"
) -> ExitResponse:
    """``kong.response.error(status, message)`` as the runloop calls it (404 no route, 503 no peer, a Lua error's
    delayed 500): the template of ``get_response_type(accept)`` -- every Accept header joined, JSON without one
    (pdk/response.lua:1141-1160) -- with the message, else the status's default one, and the request id.
    `source` is what ``kong.response.get_source()`` then says."""
    return _from_template(status, response_type(accept), message or default_message(status), request_id, source)


def error_handler(status: int, accept_header: str, request_id: str) -> ExitResponse:
    """kong/error_handlers.lua:50-91 for an nginx error status, ``accept_header`` being what it reads (the first
    Accept header, else the first Content-Type, else kong.conf ``error_default_type``): the status's BODIES message
    (494 is sent as 400); an ``application/grpc...`` value gets kong.response.exit's JSON ``{"message": ...}``
    (pdk/response.lua:729-748), any other the template of ``get_response_type(accept_header)``.
    ``kong.response.get_source()`` is "error" (Kong.handle_error sets KONG_UNEXPECTED, init.lua:1855-1864)."""
    message = handler_message(status)
    if status == 494:
        status = 400
    if accept_header.startswith(GRPC_TYPE):
        body = json.dumps({"message": message}, separators=(",", ":")).replace("/", "\\/").encode()  # cjson
        return ExitResponse(status=status, body=body, headers=Headers([("Content-Type", JSON_TYPE)]), source="error")
    return _from_template(status, response_type(accept_header), message, request_id, "error")


def _from_template(status: int, content_type: str, message: str, request_id: str, source: str) -> ExitResponse:
    """The body ``fmt(get_error_template(content_type), message, request_id)`` with ``Content-Type: content_type``;
    "" (application/grpc's) goes out as " ", as kong.response.exit/send normalise it (pdk/private/checks.lua:13-18,
    pdk/response.lua:669)."""
    body = render(content_type, message, request_id)
    return ExitResponse(
        status=status, body=body, headers=Headers([("Content-Type", content_type or " ")]), source=source
    )


def _accept(ctx) -> str | None:
    values = ctx.request.headers.get_all("Accept")
    return ", ".join(values) if values else None


def runloop_error(ctx, status: int, message: str | None, source: str = "exit") -> ExitResponse:
    """`kong.response.error(status, message)` called by the runloop itself (404 no route, 503 no peer; with
    `source` "error" the flush of a plugin's Lua error in access, `pdk.response.unexpected_error`)."""
    return kong_error(status, message, ctx.request_id, _accept(ctx), source=source)


def handler_error(ctx, status: int, default_type: str | None = None) -> ExitResponse:
    """An nginx error status rendered by kong/error_handlers.lua (`error_handler`): what it reads is
    ``kong.request.get_header("Accept")`` -- nginx's ``$http_accept``, the first Accept header
    (kong/tools/http.lua:545-565) --, else the first Content-Type, else kong.conf ``error_default_type``
    (error_handlers.lua:51-57; `default_type` None: the configured one)."""
    headers = ctx.request.headers
    accept = nginx_http_var(headers, "Accept")
    if accept is None:
        accept = nginx_http_var(headers, "Content-Type")
        if accept is None:
            accept = default_type or _default_type
    return error_handler(status, accept, ctx.request_id)
