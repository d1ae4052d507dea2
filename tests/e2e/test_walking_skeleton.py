"""Client → emulator → real plugin server (sv-request-id) → sample backend → and back."""

import requests
from e2e_support import repo_plugin


def kong_yml(backend_url: str) -> str:
    return f"""
_format_version: "3.0"
services:
  - name: stories
    url: {backend_url}
    routes:
      - name: stories
        paths: ["/api/v1/stories"]
        strip_path: false
  - name: echo
    url: {backend_url}/__echo
    routes:
      - name: echo
        paths: ["/echo"]
plugins:
  - name: sv-request-id
"""


def test_request_passes_through_a_python_plugin_to_the_backend(backend, gateway):
    gw = gateway(kong_yml(backend["stories"]), [repo_plugin("sv-request-id")])
    who = {"X-User-Id": "u-1", "X-User-Role": "parent", "X-Family-Id": "f-1"}  # no sv-jwt here: the test plays it
    resp = requests.post(gw.url + "/api/v1/stories", json={"title": "The Sleepy Dragon"}, headers=who, timeout=10)
    assert resp.status_code == 201
    body = resp.json()
    assert body["service"] == "stories" and body["item"]["title"] == "The Sleepy Dragon"
    rid = resp.headers["X-Request-Id"]
    assert len(rid) == 32
    assert resp.headers["Via"].startswith("1.1 kong/")
    assert "X-Kong-Upstream-Latency" in resp.headers


def test_backend_sees_the_request_id_the_client_sees(backend, gateway):
    gw = gateway(kong_yml(backend["stories"]), [repo_plugin("sv-request-id")])
    resp = requests.get(gw.url + "/echo/anything?q=1", timeout=10)
    assert resp.status_code == 200
    received = resp.json()["request"]
    assert received["path"] == "/__echo/anything" and received["query"] == "q=1"
    upstream_headers = {k.lower(): v for k, v in received["headers"].items()}  # header names are case-insensitive
    assert upstream_headers["x-request-id"] == resp.headers["X-Request-Id"]
    assert upstream_headers["x-kong-request-id"] == resp.headers["X-Kong-Request-Id"]
    again = requests.get(gw.url + "/echo", timeout=10)
    assert again.headers["X-Request-Id"] != resp.headers["X-Request-Id"]


def test_unknown_path_gets_kongs_404(backend, gateway):
    gw = gateway(kong_yml(backend["stories"]), [repo_plugin("sv-request-id")])
    resp = requests.get(gw.url + "/nowhere", timeout=10)
    assert resp.status_code == 404
    assert resp.json()["message"] == "no Route matched with those values"
    assert resp.headers["Content-Type"] == "application/json; charset=utf-8"
