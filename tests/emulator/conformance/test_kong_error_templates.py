"""Kong 3.9.1 errors nginx raises before any Lua phase runs, rendered by kong/error_handlers.lua through
kong/tools/http.lua's templates (`error_page 400 404 405 408 411 412 413 414 417` and `error_page 494 =494`,
kong/templates/nginx_kong.lua:100-102), on nginx's limits (large_client_header_buffers 4 8k, kong.conf.default
nginx_http_large_client_header_buffers). The request's bytes never come back, no traceback is logged. Then which
template Kong's error handler and kong.response.error pick for a request (get_response_type)."""

from __future__ import annotations

import json
import socket

import pytest
from kong_emulator.testing import EmulatorProcess, free_port
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


# ---- which template: kong/error_handlers.lua and kong.response.error -------------------------------------------------
# Both pick the type with kong/tools/http.lua:453-488 get_response_type: each comma-separated Accept entry that matches
# the media-range pattern counts, the first one with the highest q (> 0) wins, its type through get_mime_type
# (http.lua:491-515: type/*, */*, unknown types → JSON); no entry → JSON. They differ in what they feed it:
# * error_handlers.lua:51-57 (nginx's error_page → Kong.handle_error, init.lua:1855-1864): kong.request.get_header
#   "Accept" -- the first Accept header only (http.lua:545-565) --, else the first Content-Type, else kong.conf
#   error_default_type; a value that starts with application/grpc is kong.response.exit's JSON {"message": ...}
#   (error_handlers.lua:70-71, 91; pdk/response.lua:729-748), no request id;
# * kong.response.error (pdk/response.lua:1141-1160; the runloop's 404 no route): every Accept header, joined
#   (http.lua:455-457), and no Content-Type fallback.
# application/grpc maps to "" (http.lua:383, a true value in Lua), whose template is "" (http.lua:394, 531-532): an
# empty body, and the Content-Type "" is sent as " " (pdk/private/checks.lua:13-18 via response.lua:669): blank.

UPSTREAM_ERROR = "An invalid response was received from the upstream server"
HTML = "text/html; charset=utf-8"
XML = "application/xml; charset=utf-8"
PLAIN = "text/plain; charset=utf-8"
JSON_T = "application/json; charset=utf-8"
BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


@pytest.fixture(scope="module")
def types_gw():
    yml = f"""_format_version: "3.0"
services:
- name: dead
  url: http://127.0.0.1:{free_port()}/
  retries: 0
  routes:
  - name: dead
    paths: [/dead]
  - name: exit
    paths: [/exit]
    plugins:
    - name: pre-function
      config:
        access: ["ngx.exit(404)"]
"""
    with EmulatorProcess(yml, [], strict=True) as gw:
        yield gw


def _request(port: int, path: str, headers: list[tuple[str, str]]):
    lines = "".join(f"{k}: {v}\r\n" for k, v in headers)
    return _send(port, f"GET {path} HTTP/1.1\r\nHost: h\r\nConnection: close\r\n{lines}\r\n".encode())


def _check_template(answer, status: int, content_type: str | None, message: str) -> None:
    code, headers, body = answer
    text = body.decode()
    rid = headers["x-kong-request-id"]
    assert code == status
    assert headers.get("content-type") == content_type
    expected = {  # kong/tools/http.lua:393-422
        HTML: f"<h1>Error</h1>\n    <p>{message}.</p>\n    <p>request_id: {rid}</p>",
        XML: f"<message>{message}</message>\n  <requestid>{rid}</requestid>",
        PLAIN: f"{message}\nrequest_id: {rid}\n",
        JSON_T: f'{{\n  "message":"{message}",\n  "request_id":"{rid}"\n}}',
    }
    assert expected[content_type] in text and (content_type != JSON_T or text == expected[JSON_T])


@pytest.mark.parametrize(
    ("headers", "content_type"),
    [
        ([("Accept", BROWSER)], HTML),
        ([("Accept", "text/html;q=0.1, application/xml")], XML),  # the highest q, not the first entry
        ([("Accept", "application/json;q=0, text/plain")], PLAIN),  # q=0 never wins
        ([("Accept", "text/*;q=0.5, image/png")], JSON_T),  # image/png (q=1) wins and has no template: JSON
        ([("Accept", "text/html"), ("Accept", "application/xml")], HTML),  # the first Accept header only
        ([("Accept", "text/html;q=0.5"), ("Accept", "application/xml")], HTML),  # ... even with a lower q
        ([("Content-Type", "application/xml; charset=utf-8")], XML),  # no Accept: the Content-Type
        ([], PLAIN),  # neither: kong.conf error_default_type (text/plain)
    ],
)
def test_the_error_handler_picks_the_type_with_get_response_type(types_gw, headers, content_type):
    # init.lua:1305-1375 and nginx: a refused connect with no retry left is nginx's 502 → error_page 502
    # (nginx_kong.lua:102) → error_handlers.lua:74-77
    _check_template(_request(types_gw.port, "/dead", headers), 502, content_type, UPSTREAM_ERROR)


def test_the_error_handler_answers_a_grpc_accept_with_exits_json_message(types_gw):
    # error_handlers.lua:70-71: find(accept, "application/grpc") == 1 → message = {message = ...}, no headers;
    # kong.response.exit (pdk/response.lua:729-748) cjson-encodes it with Content-Type application/json
    code, headers, body = _request(types_gw.port, "/dead", [("Accept", "application/grpc")])
    assert code == 502 and headers["content-type"] == JSON_T
    assert json.loads(body) == {"message": UPSTREAM_ERROR}


def test_a_grpc_type_chosen_by_q_is_an_empty_body_with_a_blank_content_type(types_gw):
    # error_handlers.lua:74-77: get_response_type → get_mime_type("application/grpc") = "" (http.lua:383); its
    # template is "" (http.lua:531-532); kong.response.exit(502, "", {["Content-Type"] = ""})
    code, headers, body = _request(types_gw.port, "/dead", [("Accept", "text/plain;q=0.5, application/grpc")])
    assert code == 502 and body == b"" and headers["content-type"] == ""


@pytest.mark.parametrize(
    ("headers", "content_type"),
    [
        ([("Accept", "text/html"), ("Accept", "application/xml")], HTML),
        ([], PLAIN),
    ],
)
def test_ngx_exit_with_an_error_page_status_goes_through_the_error_handler(types_gw, headers, content_type):
    # a plugin's ngx.exit(404): nginx's error_page 404 (nginx_kong.lua:100) → Kong.handle_error → error_handlers.lua
    # (first Accept, else Content-Type, else error_default_type), error_handlers.lua:16 [404] = "Not found"
    _check_template(_request(types_gw.port, "/exit", headers), 404, content_type, "Not found")


@pytest.mark.parametrize(
    ("headers", "content_type"),
    [
        ([("Accept", "text/html;q=0.5"), ("Accept", "application/xml")], XML),  # all Accept headers, joined
        ([("Accept", BROWSER)], HTML),
        ([("Content-Type", "application/xml")], JSON_T),  # no Content-Type fallback
    ],
)
def test_kong_response_error_reads_every_accept_header(types_gw, headers, content_type):
    # handler.lua access.before: kong.response.error(404, "no Route matched with those values");
    # pdk/response.lua:1149-1150 ngx.req.get_headers()["Accept"] (a table for repeats) → get_response_type
    answer = _request(types_gw.port, "/nowhere", headers)
    _check_template(answer, 404, content_type, "no Route matched with those values")


def test_kong_response_error_with_a_grpc_accept_is_an_empty_body(types_gw):
    # pdk/response.lua:1150: get_response_type("application/grpc") = "" (not CONTENT_TYPE_GRPC, so a body is made,
    # 1157-1160) from the "" template: nothing
    code, headers, body = _request(types_gw.port, "/nowhere", [("Accept", "application/grpc")])
    assert code == 404 and body == b"" and headers["content-type"] == ""
