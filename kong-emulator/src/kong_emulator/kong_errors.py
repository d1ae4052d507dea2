"""Responses Kong itself produces (no route, upstream failures, plugin crashes), with Kong 3.x's exact bodies.

Kong renders these from its default error templates (`kong/tools/http.lua`, `kong/error_handlers.lua`); since 3.5
the JSON template carries the request id.
"""

from __future__ import annotations

import json

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


def kong_error(status: int, message: str | None, request_id: str) -> ExitResponse:
    """A Kong-generated JSON error (the `application/json` template)."""
    body = {"message": message or default_message(status), "request_id": request_id}
    return ExitResponse(
        status=status,
        body=json.dumps(body).encode(),
        headers=Headers([("Content-Type", JSON_TYPE)]),
        source="error",
    )


def render_error_body(status: int, message: str | None, accept: str | None, request_id: str) -> tuple[bytes, str]:
    """`kong.response.error` picks the template from Accept: JSON by default, or HTML/XML/plain text."""
    text = message or default_message(status)
    accept = (accept or "").lower()
    if "application/json" in accept or not accept or "*/*" in accept:
        return json.dumps({"message": text, "request_id": request_id}).encode(), JSON_TYPE
    if "text/html" in accept:
        html = (
            '<!doctype html>\n<html>\n  <head>\n    <meta charset="utf-8">\n    <title>Error</title>\n'
            f"  </head>\n  <body>\n    <h1>Error</h1>\n    <p>{_escape(text)}.</p>\n"
            f"    <p>request_id: {request_id}</p>\n  </body>\n</html>\n"
        )
        return html.encode(), "text/html; charset=utf-8"
    if "xml" in accept:
        xml = (
            '<?xml version="1.0" encoding="UTF-8"?>\n<error>\n'
            f"  <message>{_escape(text)}</message>\n  <requestid>{request_id}</requestid>\n</error>\n"
        )
        return xml.encode(), "application/xml; charset=utf-8"
    if "text/plain" in accept:
        return f"{text}\nrequest_id: {request_id}\n".encode(), "text/plain; charset=utf-8"
    return json.dumps({"message": text, "request_id": request_id}).encode(), JSON_TYPE


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
