"""Responses Kong itself produces (no route, upstream failures, plugin crashes), with Kong 3.x's exact bodies.

Kong renders these from its default error templates (`kong/tools/http.lua`, `kong/error_handlers.lua`); since 3.5
the JSON template carries the request id.
"""

from __future__ import annotations

from kong_emulator.context import ExitResponse, Headers

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


def default_message(status: int) -> str:
    return DEFAULT_MESSAGES.get(status, f"The upstream server responded with {status}")


def kong_error(
    status: int,
    message: str | None,
    request_id: str,
    accept: str | None = None,
    *,
    handler: bool = False,
    source: str = "error",
    default_type: str = "text/plain",
) -> ExitResponse:
    """A Kong-generated error, rendered from Kong's templates (`kong/tools/http.lua` ERROR_TEMPLATES).

    Two paths in Kong pick the template differently:
    - `kong.response.error(status, msg)` from the runloop (404 no route, 503 no peer): `get_response_type(Accept)`,
      JSON when there is no Accept header; `kong.response.get_source()` is then "exit" (KONG_EXITED).
    - nginx errors handed to `kong/error_handlers.lua` (`handler=True`: 502/504 upstream failures, 413, 500):
      `get_mime_type(Accept or Content-Type or kong.conf error_default_type)`; get_source() is "error".
    The JSON template is `{\n  "message":"%s",\n  "request_id":"%s"\n}`, not a compact json.dumps.
    """
    from kong_emulator.pdk import response as pdk_response  # late: pdk imports context, like this module

    text = message or default_message(status)
    if handler:
        content_type = pdk_response.mime_type(accept if accept is not None else default_type)
    else:
        content_type = pdk_response.response_type(accept)
    body = (pdk_response._template(content_type) % (text, request_id)).encode()
    return ExitResponse(
        status=status,
        body=body,
        headers=Headers([("Content-Type", content_type)]),
        source=source,
    )


def _accept(ctx) -> str | None:
    values = ctx.request.headers.get_all("Accept")
    return ", ".join(values) if values else None


def runloop_error(ctx, status: int, message: str | None) -> ExitResponse:
    """`kong.response.error(status, message)` called by the runloop itself (404 no route, 503 no peer)."""
    return kong_error(status, message, ctx.request_id, _accept(ctx), source="exit")


def handler_error(ctx, status: int, message: str | None = None, default_type: str = "text/plain") -> ExitResponse:
    """An nginx error status rendered by kong/error_handlers.lua: the template follows Accept, else the request's
    Content-Type, else kong.conf `error_default_type` (text/plain by default)."""
    accept = _accept(ctx)
    if accept is None:
        accept = ctx.request.headers.get("Content-Type")
    return kong_error(status, message, ctx.request_id, accept, handler=True, default_type=default_type)


def render_error_body(status: int, message: str | None, accept: str | None, request_id: str) -> tuple[bytes, str]:
    """`kong.response.error`'s body and Content-Type for an Accept header (the same templates as Kong)."""
    exit_ = kong_error(status, message, request_id, accept)
    return exit_.body, exit_.headers.get("Content-Type") or JSON_TYPE
