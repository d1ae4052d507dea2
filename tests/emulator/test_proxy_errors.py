"""End to end: the responses Kong produces itself (404/413/502/503/504), the balancer, and parallel serving.

Bodies come from kong/tools/http.lua ERROR_TEMPLATES; the 404 is `kong.response.error(404, "no Route matched with
those values")` in handler.lua access.before; 502/504 go through kong/error_handlers.lua after `ctx.KONG_PROXIED`
was set (kong/init.lua), so they carry the proxied headers; a balancer 503 comes before it.
"""

from __future__ import annotations

import http.client
import re
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from kong_emulator import KONG_VERSION
from kong_emulator.testing import EmulatorProcess, free_port
from proxy_support import SampleBackend, Upstream, assert_no_strict_failures

SERVER = f"kong/{KONG_VERSION}"
JSON = "application/json; charset=utf-8"


def json_error(message: str, request_id: str) -> str:
    return f'{{\n  "message":"{message}",\n  "request_id":"{request_id}"\n}}'


@pytest.fixture(scope="module")
def ups():
    servers = {name: Upstream(name).start() for name in ("a", "b", "slow", "hang")}
    yield servers
    for server in servers.values():
        server.stop()


@pytest.fixture(scope="module")
def backend():
    server = SampleBackend()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def gw(ups, backend):
    dead = free_port()  # nothing listens here: connect() is refused
    yml = f"""
_format_version: "3.0"
upstreams:
- name: wrr.up
  targets:
  - {{target: "127.0.0.1:{ups["a"].port}", weight: 30}}
  - {{target: "127.0.0.1:{ups["b"].port}", weight: 10}}
- name: flaky.up
  healthchecks:
    passive:
      unhealthy: {{tcp_failures: 1}}
  targets:
  - {{target: "127.0.0.1:{dead}"}}
services:
- name: sample
  url: http://127.0.0.1:{backend.port}
  routes:
  - {{name: sample, paths: ["/sample"]}}
- name: refused
  url: http://127.0.0.1:{dead}/
  retries: 0
  routes:
  - {{name: refused, paths: ["/refused"]}}
- name: timing-out
  url: {ups["hang"].url}/slow
  read_timeout: 300
  routes:
  - {{name: timing-out, paths: ["/timing-out"]}}
- name: slow
  url: {ups["slow"].url}/slow
  routes:
  - {{name: slow, paths: ["/slow"]}}
- name: wrr
  host: wrr.up
  path: /who
  routes:
  - {{name: wrr, paths: ["/wrr"]}}
- name: flaky
  host: flaky.up
  retries: 0
  routes:
  - {{name: flaky, paths: ["/flaky"]}}
"""
    proc = EmulatorProcess(yml, conf_extra={"nginx_http_client_max_body_size": "64k"}).start()
    yield proc
    assert_no_strict_failures(proc)
    proc.stop()


def raw_request(gw, method: str, path: str, headers=None, body=None):
    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp, resp.read()
    finally:
        conn.close()


def assert_kong_made(resp) -> str:
    """Headers of a response Kong produced before proxying (ctx.KONG_PROXIED unset)."""
    rid = resp.headers["X-Kong-Request-Id"]
    assert re.fullmatch(r"[0-9a-f]{32}", rid)
    assert resp.headers["Server"] == SERVER
    assert int(resp.headers["X-Kong-Response-Latency"]) >= 0
    assert "Via" not in resp.headers and "X-Kong-Upstream-Latency" not in resp.headers
    return rid


def test_no_route_is_kongs_404_with_the_exact_body(gw):
    resp = requests.get(gw.url + "/nowhere", timeout=10)
    assert resp.status_code == 404
    rid = assert_kong_made(resp)
    assert resp.headers["Content-Type"] == JSON
    assert resp.text == json_error("no Route matched with those values", rid)
    assert resp.headers["Content-Length"] == str(len(resp.content))


def test_no_route_body_follows_the_accept_header(gw):
    resp = requests.get(gw.url + "/nowhere", headers={"Accept": "text/html"}, timeout=10)
    rid = resp.headers["X-Kong-Request-Id"]
    assert resp.headers["Content-Type"] == "text/html; charset=utf-8"
    assert f"<p>no Route matched with those values.</p>\n    <p>request_id: {rid}</p>" in resp.text
    resp, body = raw_request(gw, "GET", "/nowhere")  # no Accept at all: kong.response.error defaults to JSON
    assert resp.getheader("Content-Type") == JSON and b'"message":"no Route matched' in body


def test_head_gets_the_headers_and_no_body(gw):
    resp, body = raw_request(gw, "HEAD", "/nowhere", {"Accept": "*/*"})
    assert resp.status == 404 and body == b""
    assert resp.getheader("Content-Type") == JSON
    assert resp.getheader("Content-Length") == str(len(json_error("no Route matched with those values", "x" * 32)))


def test_connect_refused_is_502_with_proxied_headers(gw):
    resp = requests.get(gw.url + "/refused", timeout=10)
    assert resp.status_code == 502
    rid = resp.headers["X-Kong-Request-Id"]
    assert resp.text == json_error("An invalid response was received from the upstream server", rid)
    assert resp.headers["Via"] == f"1.1 {SERVER}" and resp.headers["Server"] == SERVER
    assert int(resp.headers["X-Kong-Upstream-Latency"]) >= 0 and int(resp.headers["X-Kong-Proxy-Latency"]) >= 0
    assert "X-Kong-Response-Latency" not in resp.headers


def test_nginx_errors_without_accept_use_error_default_type(gw):
    resp, body = raw_request(gw, "GET", "/refused")  # no Accept, no Content-Type -> text/plain
    rid = resp.getheader("X-Kong-Request-Id")
    assert resp.status == 502
    assert resp.getheader("Content-Type") == "text/plain; charset=utf-8"
    assert body.decode() == f"An invalid response was received from the upstream server\nrequest_id: {rid}\n"


def test_read_timeout_is_504(gw):
    t0 = time.monotonic()
    resp = requests.get(gw.url + "/timing-out?ms=3000", timeout=10)
    assert resp.status_code == 504
    assert time.monotonic() - t0 < 2.5  # read_timeout 300 ms, not the upstream's 3 s
    assert resp.text == json_error("The upstream server is timing out", resp.headers["X-Kong-Request-Id"])


def test_all_targets_unhealthy_is_503(gw):
    first = requests.get(gw.url + "/flaky", timeout=10)
    assert first.status_code == 502  # the failure that trips passive health (tcp_failures: 1)
    resp = requests.get(gw.url + "/flaky", timeout=10)
    assert resp.status_code == 503
    rid = assert_kong_made(resp)  # balancer failure in access.after: before KONG_PROXIED
    assert resp.text == json_error("failure to get a peer from the ring-balancer", rid)


def test_weighted_round_robin_distribution(gw, ups):
    ups["a"].hits = ups["b"].hits = 0
    answers = [requests.get(gw.url + "/wrr", timeout=10).text for _ in range(40)]
    assert answers.count("a") == 30 and answers.count("b") == 10  # 3:1, whole wheel turns
    assert ups["a"].hits == 30 and ups["b"].hits == 10


def test_body_over_client_max_body_size_is_kongs_413(gw):
    resp = requests.post(gw.url + "/sample/__echo", data=b"x" * (128 * 1024), timeout=10)
    assert resp.status_code == 413
    rid = assert_kong_made(resp)
    assert resp.text == json_error("Payload too large", rid)
    ok = requests.post(gw.url + "/sample/__echo", data=b"x" * 1024, timeout=10)
    assert ok.status_code == 200 and ok.json()["request"]["body"] == "x" * 1024


def test_upstream_error_statuses_pass_through_untouched(gw):
    resp = requests.get(gw.url + "/sample/__status/503", timeout=10)
    assert resp.status_code == 503 and resp.json() == {"service": "stories", "status": 503}
    assert resp.headers["Via"] == f"1.1 {SERVER}"


def test_concurrent_requests_are_served_in_parallel(gw, ups):
    slow = ups["slow"]
    slow.max_inflight = 0

    def one(_):
        t0 = time.monotonic()
        r = requests.get(gw.url + "/slow?ms=500", timeout=10)
        return r.status_code, t0, time.monotonic()

    t0 = time.monotonic()
    with ThreadPoolExecutor(10) as pool:
        results = list(pool.map(one, range(10)))
    elapsed = time.monotonic() - t0
    assert all(status == 200 for status, _, _ in results)
    assert slow.max_inflight == 10  # all ten were at the upstream at once
    assert max(start for _, start, _ in results) < min(end for _, _, end in results)  # overlapping lifetimes
    assert elapsed < 4.0  # serial would take at least 5 s
