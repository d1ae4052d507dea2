"""nginx's HTTP layer in front of Kong's Lua, on aiohttp: what happens before any phase runs.

* Request line and header limits are nginx's ``large_client_header_buffers 4 8k`` (kong.conf.default
  ``nginx_http_large_client_header_buffers``): a request line that does not fit is **414**, a header line that does
  not fit is **494** -- both, like any request nginx cannot parse (**400**), go to ``/kong_error_handler``
  (kong/templates/nginx_kong.lua:100-102), which renders Kong's error template (kong/error_handlers.lua: 494 is sent
  as 400 "Request header or cookie too large"). No request byte is echoed and nothing of it is logged: nginx logs
  "client sent invalid request" at info level, without the line.
* No limit on the number of header lines (aiohttp's is 128): what bounds them is nginx's buffer arithmetic -- the
  request is read into one ``client_header_buffer_size`` (1k) buffer, and a line that does not fit moves to a fresh
  8k buffer, at most 4 of them (ngx_http_request.c ``ngx_http_alloc_large_header_buffer``); when a fifth would be
  needed nginx answers **494** as for an over-long line. `fits_header_buffers` replays that on the lines as clients
  write them (``Name: value``; aiohttp keeps no record of the spaces around a value).
* Responses carry no ``Server: Python/x aiohttp/y`` of aiohttp's own: Kong sets ``Server`` itself or clears it
  (kong.conf ``headers``).

aiohttp has no hook for its parser errors, so `KongServerRunner` uses a `RequestHandler` subclass (its
``handle_error``) -- the only place the emulator reaches into aiohttp's internals.
"""

from __future__ import annotations

import asyncio
import logging
import uuid

from aiohttp import http_exceptions, web, web_protocol, web_server
from aiohttp.http import SERVER_SOFTWARE, HttpVersion11

from kong_emulator import KONG_VERSION
from kong_emulator.tools import kong_errors

log = logging.getLogger("kong_emulator.nginx")

# one 8k buffer holds the request line ("GET " + URI + " HTTP/1.1\r\n") or one header line ("Name: value\r\n")
REQUEST_LINE_LIMIT = 8192 - len("GET  HTTP/1.1\r\n")
HEADER_LINE_LIMIT = 8192 - len(": \r\n")

# kong.conf.default:1103-1111 nginx_http_client_header_buffer_size = 1k, nginx_http_large_client_header_buffers = 4 8k
CLIENT_HEADER_BUFFER = 1024
LARGE_BUFFERS, LARGE_BUFFER_SIZE = 4, 8192
# the most header lines those buffers can hold ("a:\r\n" is the shortest line nginx takes): aiohttp's own count limit
# is set above it so that only the buffer arithmetic decides
MAX_HEADER_LINES = (CLIENT_HEADER_BUFFER + LARGE_BUFFERS * LARGE_BUFFER_SIZE) // len("a:\r\n")

# error_handlers.lua:14-27 BODIES (the statuses nginx itself raises here)
BAD_REQUEST = 400
URI_TOO_LONG = 414
HEADER_TOO_LARGE = 494


class KongResponse(web.Response):
    """A response without aiohttp's own ``Server`` header (Kong's header_filter decides that header; an upstream's
    own ``Server`` passes)."""

    async def _prepare_headers(self) -> None:
        had_server = "Server" in self.headers
        await super()._prepare_headers()
        if not had_server and self.headers.get("Server") == SERVER_SOFTWARE:
            del self.headers["Server"]


def nginx_status(exc: BaseException | None) -> int:
    """The status nginx answers for what aiohttp's parser refused."""
    if isinstance(exc, http_exceptions.LineTooLong):
        return URI_TOO_LONG if exc.args[1] == REQUEST_LINE_LIMIT else HEADER_TOO_LARGE
    return BAD_REQUEST


def error_response(status: int, server_tokens: bool = True) -> KongResponse:
    """kong/error_handlers.lua for an unparsed request: no Accept seen, so kong.conf ``error_default_type`` through
    ``get_response_type`` (`kong_errors.error_handler`, which also sends 494 as 400)."""
    request_id = uuid.uuid4().hex
    answer = kong_errors.error_handler(status, kong_errors.default_type(), request_id)
    response = KongResponse(status=answer.status, body=answer.body)
    for name, value in answer.headers.items():
        response.headers[name] = value
    if server_tokens:
        response.headers["Server"] = f"kong/{KONG_VERSION}"
    response.headers["X-Kong-Request-Id"] = request_id
    response.force_close()
    return response


def fits_header_buffers(line_lengths) -> bool:
    """Whether nginx could hold a request head of lines this long (CRLF included, the closing empty line last).

    ngx_http_alloc_large_header_buffer: the line being read when the current buffer is full moves whole into a new
    large buffer (one line never spans two); a line that fills a buffer exactly still needs a new one for the next.
    """
    capacity, used, large = CLIENT_HEADER_BUFFER, 0, 0
    for length in line_lengths:
        if used + length <= capacity:
            used += length
            continue
        large += 1
        if large > LARGE_BUFFERS or length > LARGE_BUFFER_SIZE:
            return False
        capacity, used = LARGE_BUFFER_SIZE, length
    return True


def request_head_lines(request: web.BaseRequest) -> list[int]:
    """The lengths of the request line, the header lines (``Name: value``) and the closing CRLF, as sent."""
    version = request.version
    first = len(request.method) + len(request.raw_path) + len(f"  HTTP/{version.major}.{version.minor}\r\n")
    return [first, *(len(k) + len(v) + 4 for k, v in request.raw_headers), 2]


class KongRequestHandler(web_protocol.RequestHandler):
    """aiohttp's connection handler with nginx's answer to requests it cannot parse or hold."""

    server_tokens = True

    async def _handle_request(self, request, start_time, request_handler):
        # a head nginx's buffers cannot hold is refused before any phase (ngx_http_process_request_headers: 494)
        if request_handler is self._request_handler:
            lines = request_head_lines(request)
            # a head of at most 8k fits whatever its lines: what overflows the 1k buffer fits the first large one
            if sum(lines) > LARGE_BUFFER_SIZE and not fits_header_buffers(lines):
                request_handler = self._header_too_large
        return await super()._handle_request(request, start_time, request_handler)

    async def _header_too_large(self, request) -> web.StreamResponse:
        log.info("[nginx] client sent too large request: answered %d", HEADER_TOO_LARGE)
        return error_response(HEADER_TOO_LARGE, self.server_tokens)

    def handle_error(self, request, status: int = 500, exc: BaseException | None = None, message=None):
        if isinstance(exc, http_exceptions.HttpProcessingError):
            status = nginx_status(exc)
            log.info("[nginx] client sent invalid request (%s): answered %d", type(exc).__name__, status)
        else:  # an exception out of the handler: the emulator's bug, logged without the request
            log.error("[emulator] unhandled error: %s", type(exc).__name__ if exc else status)
            status = 500
        if request.writer.output_size > 0:
            raise ConnectionError("response already started")
        return error_response(status, self.server_tokens)


class _KongServer(web_server.Server):
    server_tokens = True

    def __call__(self) -> web_protocol.RequestHandler:
        handler = KongRequestHandler(self, loop=self._loop, **self._kwargs)
        handler.server_tokens = self.server_tokens
        return handler


class KongServerRunner(web.ServerRunner):
    """aiohttp's low-level server for one proxy listener: every request goes to ``handler`` (no aiohttp routing or
    middleware -- Kong's router is the emulator's own), on connections with `KongRequestHandler`, nginx's line
    limits and ``client_max_size`` (nginx ``client_max_body_size``, 0 = no limit) for the body."""

    def __init__(self, handler, *, client_max_size: int, server_tokens: bool = True, **kwargs) -> None:
        kwargs.setdefault("max_line_size", REQUEST_LINE_LIMIT)
        kwargs.setdefault("max_field_size", HEADER_LINE_LIMIT)
        kwargs.setdefault("max_headers", MAX_HEADER_LINES)
        loop = asyncio.get_running_loop()

        def make_request(message, payload, protocol, writer, task) -> web.BaseRequest:
            return web.BaseRequest(message, payload, protocol, writer, task, loop, client_max_size=client_max_size)

        server = _KongServer(handler, request_factory=make_request, loop=loop, **kwargs)
        server.server_tokens = server_tokens
        super().__init__(server, handle_signals=False)


async def continue_if_expected(request: web.BaseRequest) -> None:
    """nginx's ``ngx_http_test_expect`` before the body is read: an HTTP/1.1 request with ``Expect: 100-continue``
    gets the interim ``100 Continue``; any other expectation is ignored (nginx answers no 417)."""
    if request.version >= HttpVersion11 and request.headers.get("Expect", "").lower() == "100-continue":
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        request.writer.output_size = 0  # the response proper has not started
