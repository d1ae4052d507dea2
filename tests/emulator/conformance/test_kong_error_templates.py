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
