"""End to end: routing (paths, regex captures, methods, hosts, headers, strip_path) and the plugin phases around
the upstream call (`response` sees the service's answer, `log` runs after the client has its response).

The probe plugin is tests/emulator/plugins/t_proxy_probe.py, run as a real kong-pdk dedicated server.
"""

from __future__ import annotations

import json
import time

import pytest
import requests
from kong_emulator.testing import EmulatorProcess
from proxy_support import PROBE, Upstream, assert_no_strict_failures, pairs_to_multimap


@pytest.fixture(scope="module")
def up():
    server = Upstream().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def log_file(tmp_path_factory):
    return tmp_path_factory.mktemp("probe") / "log.json"


@pytest.fixture(scope="module")
def gw(up, log_file):
    yml = f"""
_format_version: "3.0"
services:
- name: base
  url: {up.url}/echo/base
  routes:
  - {{name: stripped, paths: ["/api"]}}
  - {{name: kept, paths: ["/keep"], strip_path: false}}
  - name: chapters
    paths: ["~/stories/(?<story>[0-9]+)/chapters/([0-9]+)$"]
    strip_path: false
    plugins: [{{name: t-proxy-probe, config: {{captures: true}}}}]
  - {{name: post-only, paths: ["/m"], methods: [POST]}}
  - {{name: by-host, paths: ["/h"], hosts: ["*.stories.test"]}}
  - {{name: by-header, paths: ["/hdr"], headers: {{x-version: [v2]}}}}
  - name: logged
    paths: ["/logged"]
    plugins: [{{name: t-proxy-probe, config: {{log_file: "{log_file}", log_delay: 0.6}}}}]
- name: made-headers
  url: {up.url}/headers
  routes:
  - name: response-phase
    paths: ["/resp"]
    plugins: [{{name: t-proxy-probe, config: {{response: true}}}}]
"""
    proc = EmulatorProcess(yml, [PROBE]).start()
    yield proc
    assert_no_strict_failures(proc)
    proc.stop()


def upstream_view(resp) -> tuple[str, dict[str, list[str]]]:
    assert resp.status_code == 200, resp.text
    seen = resp.json()
    return seen["path_qs"], pairs_to_multimap(seen["headers"])


@pytest.mark.parametrize(
    ("path", "upstream"),
    [
        ("/api", "/echo/base"),
        ("/api/", "/echo/base/"),
        ("/api/x/y?q=1", "/echo/base/x/y?q=1"),
        ("/keep/x", "/echo/base/keep/x"),
    ],
)
def test_strip_path_and_service_path_joining(gw, path, upstream):
    assert upstream_view(requests.get(gw.url + path, timeout=10))[0] == upstream


def test_regex_route_captures_reach_the_plugin(gw):
    path, h = upstream_view(requests.get(gw.url + "/stories/42/chapters/7", timeout=10))
    assert path == "/echo/base/stories/42/chapters/7"
    caps = json.loads(h["x-probe-captures"][0])
    assert caps["named"] == {"story": "42"}
    assert {str(k): v for k, v in caps["unnamed"].items()} == {"0": "/stories/42/chapters/7", "1": "42", "2": "7"}
    assert requests.get(gw.url + "/stories/x/chapters/7", timeout=10).status_code == 404


def test_methods_hosts_and_headers_select_routes(gw):
    assert requests.get(gw.url + "/m", timeout=10).status_code == 404
    assert requests.post(gw.url + "/m", timeout=10).status_code == 200
    assert requests.get(gw.url + "/h", headers={"Host": "eu.stories.test"}, timeout=10).status_code == 200
    assert requests.get(gw.url + "/h", headers={"Host": "eu.other.test"}, timeout=10).status_code == 404
    assert requests.get(gw.url + "/hdr", headers={"X-Version": "v2"}, timeout=10).status_code == 200
    assert requests.get(gw.url + "/hdr", headers={"X-Version": "v1"}, timeout=10).status_code == 404
    assert requests.get(gw.url + "/hdr", timeout=10).status_code == 404


def test_response_phase_sees_the_service_answer_and_can_change_it(gw):
    resp = requests.get(gw.url + "/resp", timeout=10)
    assert resp.status_code == 201 and resp.text == "upstream body"
    assert resp.headers["X-Probe-Upstream-Status"] == "201"
    assert resp.headers["X-Probe-Upstream-Header"] == "from-upstream"
    assert resp.headers["X-Up"] == "changed-by-probe"
    assert resp.raw.headers.getlist("Set-Cookie") == ["a=1", "b=2"]


def test_log_phase_runs_after_the_response_with_serialize(gw, log_file):
    t0 = time.monotonic()
    resp = requests.get(gw.url + "/logged/x?k=v", timeout=10)
    answered_at = time.time()
    assert resp.status_code == 200
    assert time.monotonic() - t0 < 0.6  # the log handler sleeps 0.6 s: the client did not wait for it
    assert not log_file.exists()
    deadline = time.monotonic() + 10
    while not log_file.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    record = json.loads(log_file.read_text())
    assert record["at"] >= answered_at
    assert record["status"] == 200 and record["source"] == "service"
    s = record["serialized"]
    assert s["request"]["id"] == resp.headers["X-Kong-Request-Id"]
    assert s["request"]["uri"] == "/logged/x?k=v" and s["request"]["querystring"] == {"k": "v"}
    assert s["upstream_uri"] == "/echo/base/x?k=v"
    assert s["response"]["status"] == 200
    assert s["route"]["name"] == "logged" and s["service"]["name"] == "base"
    assert s["client_ip"] == "127.0.0.1"
    assert set(s["latencies"]) >= {"kong", "proxy", "request"}
