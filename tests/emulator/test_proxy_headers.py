"""End to end through the real emulator process: the upstream request and the client response headers, as Kong 3.9.

References: kong/runloop/handler.lua (access.before X-Forwarded-* and Via, access.after hop-by-hop clearing,
header_filter.before/after), kong/templates/nginx_kong.lua (the proxy_set_header lines).
"""

from __future__ import annotations

import http.client
import json
import re
import socket

import pytest
import requests
from kong_emulator import KONG_VERSION
from kong_emulator.testing import EmulatorProcess
from proxy_support import Upstream, assert_no_strict_failures, pairs_to_multimap

KONG_VIA = f"1.1 kong/{KONG_VERSION}"


def kong_yml(up: Upstream) -> str:
    return f"""
_format_version: "3.0"
services:
- name: echo
  url: {up.url}/echo
  routes:
  - {{name: plain, paths: ["/plain"]}}
  - {{name: keep, paths: ["/keep"], strip_path: false}}
  - {{name: preserved, paths: ["/preserved"], preserve_host: true}}
- name: made-headers
  url: {up.url}/headers
  routes:
  - {{name: made-headers, paths: ["/made-headers"]}}
- name: named-host-cookies
  url: http://localhost:{up.port}/headers
  routes:
  - {{name: named-host-cookies, paths: ["/named/cookies"]}}
- name: named-host-echo
  url: http://localhost:{up.port}/echo
  routes:
  - {{name: named-host-echo, paths: ["/named/echo"]}}
"""


@pytest.fixture(scope="module")
def up():
    server = Upstream().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def gw(up):
    proc = EmulatorProcess(kong_yml(up)).start()
    yield proc
    assert_no_strict_failures(proc)
    proc.stop()


@pytest.fixture(scope="module")
def trusted_gw(up):
    proc = EmulatorProcess(kong_yml(up), conf_extra={"trusted_ips": "0.0.0.0/0,::/0"}).start()
    yield proc
    assert_no_strict_failures(proc)
    proc.stop()


def echo(gw: EmulatorProcess, path: str, headers=None, method="GET", body=None):
    """Send with http.client (no headers added behind our back); return (response, upstream's view)."""
    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
    finally:
        conn.close()
    assert resp.status == 200, (resp.status, data[:300])
    seen = json.loads(data)
    return resp, seen, pairs_to_multimap(seen["headers"])


def test_untrusted_client_gets_kongs_own_forwarded_headers(gw, up):
    resp, seen, h = echo(
        gw,
        "/plain/a/b?x=1&y",
        {
            "Host": "API.Example.test:8000",
            "X-Forwarded-For": "1.1.1.1",
            "X-Forwarded-Proto": "https",
            "X-Forwarded-Host": "evil.example",
            "X-Forwarded-Port": "9",
            "X-Forwarded-Path": "/evil",
            "X-Forwarded-Prefix": "/evil",
            "X-Real-IP": "9.9.9.9",
        },
    )
    assert seen["path_qs"] == "/echo/a/b?x=1&y"
    assert h["x-forwarded-for"] == ["1.1.1.1, 127.0.0.1"]  # the client's list, then the peer
    assert h["x-forwarded-proto"] == ["http"]
    assert h["x-forwarded-host"] == ["api.example.test"]  # nginx $host: lower-case, no port
    assert h["x-forwarded-port"] == [str(gw.port)]
    assert h["x-forwarded-path"] == ["/plain/a/b"]  # request_uri without the query
    assert h["x-forwarded-prefix"] == ["/plain"]  # what strip_path removed
    assert h["x-real-ip"] == ["127.0.0.1"]  # $remote_addr: the peer, the header is not trusted
    assert h["host"] == [f"127.0.0.1:{up.port}"]  # the target, with its non-default port
    assert h["via"] == [KONG_VIA]
    rid = resp.getheader("X-Kong-Request-Id")
    assert re.fullmatch(r"[0-9a-f]{32}", rid) and h["x-kong-request-id"] == [rid]


def test_no_client_forwarded_for_and_no_prefix_without_strip_path(gw):
    _, seen, h = echo(gw, "/keep/z", {"Via": "1.0 corp-proxy"})
    assert seen["path_qs"] == "/echo/keep/z"
    assert h["x-forwarded-for"] == ["127.0.0.1"]
    assert "x-forwarded-prefix" not in h  # an empty $upstream_x_forwarded_prefix sends no header at all
    assert h["x-forwarded-path"] == ["/keep/z"]
    assert h["via"] == [f"1.0 corp-proxy, {KONG_VIA}"]  # the client's Via, then Kong's


def test_preserve_host_sends_the_clients_host_header_verbatim(gw, up):
    _, _, h = echo(gw, "/preserved", {"Host": "Stories.Example.test:8443"})
    assert h["host"] == ["Stories.Example.test:8443"]
    _, _, h = echo(gw, "/plain", {"Host": "stories.example.test"})
    assert h["host"] == [f"127.0.0.1:{up.port}"]


def test_hop_by_hop_request_headers_are_not_forwarded(gw):
    _, _, h = echo(
        gw,
        "/plain",
        {
            "Connection": "keep-alive, X-Custom-Hop",
            "X-Custom-Hop": "only for the first hop",
            "Keep-Alive": "timeout=5",
            "Proxy": "http://evil",  # httpoxy: handler.lua clears it
            "Proxy-Connection": "keep-alive",
            "TE": "trailers, deflate",
        },
    )
    for name in ("x-custom-hop", "keep-alive", "proxy", "proxy-connection"):
        assert name not in h, name
    assert h["te"] == ["trailers"]  # $upstream_te: only "trailers" survives
    assert h["connection"] == ["keep-alive"]  # $upstream_connection


def test_identity_looking_headers_and_repeats_pass_as_is(gw):
    """Kong itself strips no identity headers: removing spoofed ones is a plugin's job, not the proxy's."""
    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=10)
    conn.putrequest("GET", "/plain", skip_accept_encoding=True)
    for name, value in [
        ("X-User-Id", "u-spoofed"),
        ("X-Consumer-Username", "mallory"),
        ("Authorization", "Bearer not-checked-by-kong"),
        ("X-Multi", "one"),
        ("X-Multi", "two"),
    ]:
        conn.putheader(name, value)
    conn.endheaders()
    seen = json.loads(conn.getresponse().read())
    conn.close()
    h = pairs_to_multimap(seen["headers"])
    assert h["x-user-id"] == ["u-spoofed"]
    assert h["x-consumer-username"] == ["mallory"]
    assert h["authorization"] == ["Bearer not-checked-by-kong"]
    assert h["x-multi"] == ["one", "two"]


def test_request_body_passes_through_unchanged(gw):
    body = bytes(range(256)) * 800  # 200 KiB of every byte value
    _, seen, h = echo(gw, "/plain", {"Content-Type": "application/octet-stream"}, method="POST", body=body)
    assert seen["method"] == "POST"
    assert seen["body"].encode("latin-1") == body
    assert h["content-length"] == [str(len(body))]


def test_trusted_client_keeps_its_forwarded_headers(trusted_gw):
    _, _, h = echo(
        trusted_gw,
        "/plain/a",
        {
            "X-Forwarded-For": "1.1.1.1",
            "X-Forwarded-Proto": "https",
            "X-Forwarded-Host": "outer.example",
            "X-Forwarded-Port": "443",
            "X-Forwarded-Path": "/outer/plain/a",
            "X-Forwarded-Prefix": "/outer",
            "X-Real-IP": "9.9.9.9",
        },
    )
    assert h["x-forwarded-for"] == ["1.1.1.1, 127.0.0.1"]  # appends $realip_remote_addr, the real peer
    assert h["x-forwarded-proto"] == ["https"]
    assert h["x-forwarded-host"] == ["outer.example"]
    assert h["x-forwarded-port"] == ["443"]
    assert h["x-forwarded-path"] == ["/outer/plain/a"]
    assert h["x-forwarded-prefix"] == ["/outer"]
    assert h["x-real-ip"] == ["9.9.9.9"]  # realip module: $remote_addr now comes from real_ip_header


def test_trusted_client_without_forwarded_for_gets_the_real_ip(trusted_gw):
    _, _, h = echo(trusted_gw, "/plain", {"X-Real-IP": "9.9.9.9"})
    assert h["x-forwarded-for"] == ["9.9.9.9"]  # $remote_addr after the realip module
    assert h["x-forwarded-prefix"] == ["/plain"]


def test_a_real_ip_that_is_not_an_address_is_ignored(trusted_gw):
    """nginx's realip module declines a header whose address does not parse (ngx_http_get_forwarded_addr_internal:
    ngx_parse_addr_port fails → NGX_DECLINED): the peer stays the client, as if no header came."""
    _, _, h = echo(trusted_gw, "/plain", {"X-Real-IP": "10.7.100045.1"})
    assert h["x-forwarded-for"] == ["127.0.0.1"] and h["x-real-ip"] == ["127.0.0.1"]


def test_response_headers_from_the_upstream_plus_kongs(gw):
    resp = requests.get(gw.url + "/made-headers", timeout=10)
    assert resp.status_code == 201 and resp.text == "upstream body"
    raw = resp.raw.headers
    assert raw["X-Up"] == "from-upstream"
    assert raw.getlist("Set-Cookie") == ["a=1", "b=2"]
    assert raw["Server"] == "up-server/1"  # proxy_pass_header Server: the upstream's stays
    assert raw["Via"] == f"1.0 upstream-proxy, {KONG_VIA}"  # header_filter.after appends Kong's outbound Via
    assert "X-Hop" not in raw  # named in the upstream's Connection header: hop-by-hop
    assert int(raw["X-Kong-Upstream-Latency"]) >= 0 and int(raw["X-Kong-Proxy-Latency"]) >= 0
    assert "X-Kong-Response-Latency" not in raw  # only on responses Kong produced itself
    assert re.fullmatch(r"[0-9a-f]{32}", raw["X-Kong-Request-Id"])


def test_plain_proxied_response_gets_kong_server_header_only_when_upstream_has_none(gw):
    resp = requests.get(gw.url + "/plain", timeout=10)
    assert resp.headers["Via"] == KONG_VIA
    assert resp.headers["Server"].startswith("Python/")  # the aiohttp upstream's own Server header


def test_head_is_proxied_with_the_upstreams_content_length_and_no_body(gw):
    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=10)
    try:
        conn.request("HEAD", "/plain")
        resp = conn.getresponse()
        body = resp.read()
    finally:
        conn.close()
    assert resp.status == 200 and body == b""
    assert int(resp.getheader("Content-Length")) > 0  # what the upstream declared for its (unsent) body
    assert resp.getheader("Via") == KONG_VIA


def test_nginx_adds_no_request_headers_the_client_did_not_send(gw):
    """proxy_pass forwards the client's headers plus Kong's proxy_set_header lines (nginx_kong.lua), nothing else:
    no default Accept, Accept-Encoding, User-Agent, or Content-Type for a body sent without one."""
    _, seen, h = echo(gw, "/plain/x", {"Accept-Encoding": "br"}, method="POST", body=b"raw")
    assert "user-agent" not in h and "accept" not in h and "content-type" not in h
    assert h["accept-encoding"] == ["br"]
    assert seen["body"] == "raw"


def test_an_upstreams_set_cookie_never_comes_back_on_a_later_request(gw):
    """nginx keeps no cookie jar: a Set-Cookie from the upstream (here a named host, whose cookies an HTTP client
    library would store) goes to that client only and is never sent upstream on another request."""
    assert requests.get(gw.url + "/named/cookies", timeout=10).status_code == 201
    _, _, h = echo(gw, "/named/echo")
    assert "cookie" not in h
    _, _, h = echo(gw, "/named/echo", {"Cookie": "mine=1"})
    assert h["cookie"] == ["mine=1"]  # the client's own Cookie header passes as sent


def _raw_exchange(gw: EmulatorProcess, expect: str) -> bytes:
    """Everything the emulator sends for one POST with ``Expect: <expect>`` (the connection closes after it)."""
    head = f"POST /plain/x HTTP/1.1\r\nHost: t\r\nExpect: {expect}\r\nConnection: close\r\nContent-Length: 3\r\n\r\n"
    with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as sock:
        sock.sendall(head.encode() + b"abc")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data


def test_expect_100_continue_gets_the_interim_response_and_other_expectations_are_ignored(gw):
    """nginx's ngx_http_test_expect (what Kong's proxy_pass runs when it reads the body): `Expect: 100-continue` on
    HTTP/1.1 gets `100 Continue` first; an unknown expectation is ignored -- no 417."""
    assert _raw_exchange(gw, "100-continue").startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 ")
    assert _raw_exchange(gw, "something-else").startswith(b"HTTP/1.1 200 ")
