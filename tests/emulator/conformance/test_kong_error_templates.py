"""Kong 3.9.1 errors nginx raises before any Lua phase runs, rendered by kong/error_handlers.lua through
kong/tools/http.lua's templates (`error_page 400 404 405 408 411 412 413 414 417` and `error_page 494 =494`,
kong/templates/nginx_kong.lua:100-102), on nginx's limits (large_client_header_buffers 4 8k, kong.conf.default
nginx_http_large_client_header_buffers). The request's bytes never come back, no traceback is logged."""

from __future__ import annotations

import json
import socket

import pytest
from kong_emulator.testing import EmulatorProcess
from proxy_support import Upstream

SECRET = "Bearer eyJhbGciOiJIUzI1NiJ9.c2VjcmV0LXRva2Vu"


@pytest.fixture(scope="module")
def gw():
    up = Upstream().start()
    yml = (
        '_format_version: "3.0"\nservices:\n- name: s\n  url: ' + up.url + "/echo\n  routes:\n  - name: r\n"
        "    paths: [/api]\n"
    )
    with EmulatorProcess(yml, [], strict=True) as gw:
        yield gw
    up.stop()


def _send(port: int, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(raw)
        out = b""
        while chunk := sock.recv(65536):
            out += chunk
            head, sep, body = out.partition(b"\r\n\r\n")
            if sep and b"content-length:" in head.lower():
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                if len(body) >= length:
                    break
    head, _, body = out.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    return int(lines[0].split()[1]), headers, body


def _check_kong_body(status_headers_body, status, message, secret=SECRET):
    code, headers, body = status_headers_body
    assert code == status
    # error_handlers.lua:47-52: no Accept/Content-Type seen → kong.conf error_default_type (text/plain);
    # kong/tools/http.lua text/plain template "%s\nrequest_id: %s\n"
    assert headers["content-type"] == "text/plain; charset=utf-8"
    assert body.decode().startswith(message + "\nrequest_id: ")
    assert secret.encode() not in body and b"eyJ" not in body
    assert "aiohttp" not in headers.get("server", "")


def test_uri_over_8k_is_414_uri_too_long(gw):
    # error_handlers.lua:21 [414] = "URI too long"
    raw = f"GET /api/{'a' * 9000} HTTP/1.1\r\nHost: h\r\nAuthorization: {SECRET}\r\n\r\n".encode()
    _check_kong_body(_send(gw.port, raw), 414, "URI too long")


def test_header_over_8k_is_494_answered_as_400(gw):
    # error_handlers.lua:22 [494] = "Request header or cookie too large"; :59-61 494 is sent as 400
    raw = f"GET /api HTTP/1.1\r\nHost: h\r\nAuthorization: {SECRET}{'x' * 9000}\r\n\r\n".encode()
    _check_kong_body(_send(gw.port, raw), 400, "Request header or cookie too large")


def test_malformed_request_is_400_bad_request(gw):
    # error_handlers.lua:14 [400] = "Bad request"
    raw = f"GET /api HTTP/1.1\r\nHost: h\r\nAuthorization {SECRET}\r\n\r\n".encode()
    _check_kong_body(_send(gw.port, raw), 400, "Bad request")


def test_nothing_of_the_request_or_a_traceback_is_logged(gw):
    raw = f"GET /api HTTP/1.1\r\nHost: h\r\nAuthorization {SECRET}\r\n\r\n".encode()
    _send(gw.port, raw)
    log = gw.output()
    assert SECRET not in log and "eyJ" not in log
    assert "Traceback" not in log


def test_an_encoded_newline_in_the_path_is_routed_like_any_path(gw):
    # nginx decodes %0A into $uri; the router (prefix /api) matches it and proxies, escaping the upstream URI again
    # (handler.lua:1324 `escape(match_t.upstream_uri)`, uri.lua:41 ESCAPE_PATTERN): the service gets /echo/a%0Ab
    code, headers, body = _send(gw.port, b"GET /api/a%0Ab HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
    assert code == 200
    assert json.loads(body)["path_qs"] == "/echo/a%0Ab"
    assert headers["via"] == "1.1 kong/3.9.1"


def test_a_kong_answer_has_kongs_server_header_only(gw):
    # handler.lua header_filter: Server = kong/<version> (kong.conf headers = server_tokens), never the HTTP server's
    code, headers, _ = _send(gw.port, b"GET /nowhere HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
    assert code == 404 and headers["server"] == "kong/3.9.1"


# ---- how many headers: nginx counts buffers, not lines ----------------------------------------------------------
# nginx has no header count limit. ngx_http_request.c ngx_http_alloc_large_header_buffer: the head is read into one
# client_header_buffer_size buffer (1k); the line being read when it is full moves whole into a new
# large_client_header_buffers buffer (8k), at most 4 (kong.conf.default:1103-1111); needing a fifth is a 494.


@pytest.mark.parametrize(
    ("lines", "fits"),
    [
        ([19, 1005], True),  # the 1k buffer exactly
        ([19, 1006, 2], True),  # the closing CRLF needs the first large buffer
        ([19, *[8190] * 4, 2], True),  # four large buffers, the last one filled exactly by the CRLF
        ([19, *[8190] * 3, 8191, 2], False),  # ... one byte more: a fifth
        ([19, *[4100] * 8, 2], False),  # 33 KB in lines two of which never share a buffer
        ([19, *[50] * 640, 2], True),  # 640 short headers, 32 KB
    ],
)
def test_the_head_must_fit_nginx_buffers(lines, fits):
    from kong_emulator.listeners.listener import fits_header_buffers

    assert fits_header_buffers(lines) is fits


def _many_headers(lines: list[str]) -> bytes:
    head = "GET /api HTTP/1.1\r\nHost: h\r\nConnection: close\r\n" + "".join(f"{line}\r\n" for line in lines)
    return (head + "\r\n").encode()


def test_more_than_128_headers_are_proxied(gw):
    code, _, body = _send(gw.port, _many_headers([f"X-H-{i}: v{i}" for i in range(300)]))
    assert code == 200
    sent = [k for k, _ in json.loads(body)["headers"] if k.startswith("X-H-")]
    assert len(sent) == 300


def test_four_full_large_buffers_pass_and_one_byte_more_is_494(gw):
    # "GET /api HTTP/1.1\r\n", Host and Connection (47 bytes) in the 1k buffer, then four 8190-byte lines, one per
    # large buffer; the closing CRLF fills the fourth exactly
    lines = [f"X-B{i}: {'b' * 8182}" for i in range(4)]
    code, _, _ = _send(gw.port, _many_headers(lines))
    assert code == 200
    lines[3] += "b"
    _check_kong_body(_send(gw.port, _many_headers(lines)), 400, "Request header or cookie too large", secret="bbbb")


def test_many_lines_under_8k_each_still_overflow_the_buffers(gw):
    # 40 lines of 1 KB: each fits a buffer, 40 KB do not fit four (aiohttp alone would take them: under 128)
    lines = [f"X-K{i:02}: {'k' * 1000}" for i in range(40)]
    _check_kong_body(_send(gw.port, _many_headers(lines)), 400, "Request header or cookie too large", secret="kkkk")
