"""The native ``cors`` plugin (Kong 3.9's handler): preflights, simple requests, regex origins, credentials,
disallowed origins, ``preflight_continue`` and CORS headers on responses Kong or a plugin produced."""

from __future__ import annotations

import pytest
import requests
from kong_emulator.config.errors import ConfigError
from kong_emulator.config.plugin_schema import normalize_config
from kong_emulator.native import native_infos
from kong_emulator.native.cors import normalize_origin
from kong_emulator.testing import EmulatorProcess
from sample_backend.testing import running

APP = "https://app.storyverse.example"
ALL_METHODS = "GET,HEAD,PUT,PATCH,POST,DELETE,OPTIONS,TRACE,CONNECT"


def test_info_and_schema_defaults():
    info = native_infos()["cors"]
    assert info.priority == 2000 and info.phases == ("access", "header_filter")
    conf = normalize_config(info, {}, "plugins[0]")
    assert conf == {
        "origins": None, "headers": None, "exposed_headers": None, "methods": ALL_METHODS.split(","),
        "max_age": None, "credentials": False, "private_network": False, "preflight_continue": False,
        "allow_origin_absent": True,
    }  # fmt: skip
    with pytest.raises(ConfigError, match="'\\(' is not a valid regex"):
        normalize_config(info, {"origins": ["("]}, "plugins[0]")
    with pytest.raises(ConfigError, match="expected one of"):
        normalize_config(info, {"methods": ["FETCH"]}, "plugins[0]")


@pytest.mark.parametrize(
    ("origin", "domain", "host"),
    [
        ("https://app.example:443", "https://app.example", "app.example"),
        ("http://app.example:8080", "http://app.example:8080", "app.example"),
        ("http://app.example/path", "http://app.example", "app.example"),
        ("null", "null", "null"),
    ],
)
def test_normalize_origin(origin, domain, host):
    assert normalize_origin(origin) == {"domain": domain, "host": host}


def kong_yml(backend: str) -> str:
    return f"""
_format_version: "3.0"
services:
  - name: echo
    url: {backend}/__echo
    routes:
      - name: browser
        paths: ["/browser"]
        plugins:
          - name: cors
            config:
              origins: ["{APP}", "https://(.*)\\\\.storyverse\\\\.test"]
              headers: ["Authorization", "Content-Type"]
              exposed_headers: ["X-Kong-Request-Id"]
              credentials: true
              max_age: 600
      - name: open
        paths: ["/open"]
        plugins:
          - name: cors
      - name: delegated
        paths: ["/delegated"]
        plugins:
          - name: cors
            config:
              origins: ["{APP}"]
              preflight_continue: true
      - name: denied
        paths: ["/denied"]
        plugins:
          - name: cors
            config:
              origins: ["{APP}", "https://other.example"]
          - name: pre-function
            config:
              access: ["return kong.response.exit(401, {{message = 'Unauthorized'}})"]
"""


@pytest.fixture(scope="module")
def backend():
    with running("echo") as urls:
        yield urls["echo"]


@pytest.fixture(scope="module")
def gw(backend):
    gw = EmulatorProcess(kong_yml(backend), strict=True).start()
    try:
        yield gw
        assert not gw.strict_failures(), gw.strict_failures()
    finally:
        gw.stop()


def _preflight(gw, path, origin, **extra):
    headers = {"Origin": origin, "Access-Control-Request-Method": "POST", **extra}
    return requests.options(gw.url + path, headers=headers, timeout=5)


def test_preflight_is_answered_by_kong_with_200(gw):
    resp = _preflight(gw, "/browser/x", APP, **{"Access-Control-Request-Headers": "X-Ignored"})
    assert resp.status_code == 200 and resp.content == b""
    h = resp.headers
    assert h["Access-Control-Allow-Origin"] == APP
    assert h["Access-Control-Allow-Credentials"] == "true"
    assert h["Access-Control-Allow-Headers"] == "Authorization,Content-Type"  # config.headers, not the request's
    assert h["Access-Control-Allow-Methods"] == ALL_METHODS
    assert h["Access-Control-Max-Age"] == "600"
    assert h["Vary"] == "Origin"
    assert h["Content-Length"] == "0"
    assert "Access-Control-Expose-Headers" not in h  # header_filter adds nothing to a handled preflight
    assert "X-Kong-Response-Latency" in h  # Kong's own answer: the upstream never saw it


def test_preflight_from_a_regex_origin_and_a_disallowed_origin(gw):
    ok = _preflight(gw, "/browser", "https://tales.storyverse.test")
    assert ok.headers["Access-Control-Allow-Origin"] == "https://tales.storyverse.test"
    bad = _preflight(gw, "/browser", "https://evil.example")
    assert bad.status_code == 200  # Kong still answers; the browser refuses without ACAO
    assert "Access-Control-Allow-Origin" not in bad.headers
    assert bad.headers["Access-Control-Allow-Credentials"] == "true"


def test_simple_request_gets_origin_exposed_headers_and_vary(gw):
    resp = requests.get(gw.url + "/browser", headers={"Origin": APP}, timeout=5)
    assert resp.status_code == 200 and resp.json()["request"]["method"] == "GET"
    assert resp.headers["Access-Control-Allow-Origin"] == APP
    assert resp.headers["Access-Control-Allow-Credentials"] == "true"
    assert resp.headers["Access-Control-Expose-Headers"] == "X-Kong-Request-Id"
    assert "Origin" in resp.headers["Vary"]
    bad = requests.get(gw.url + "/browser", headers={"Origin": "https://evil.example"}, timeout=5)
    assert bad.status_code == 200 and "Access-Control-Allow-Origin" not in bad.headers


def test_wildcard_default_config(gw):
    pre = _preflight(gw, "/open", "https://anything.example", **{"Access-Control-Request-Headers": "X-A,X-B"})
    assert pre.status_code == 200
    assert pre.headers["Access-Control-Allow-Origin"] == "*"
    assert pre.headers["Access-Control-Allow-Headers"] == "X-A,X-B"  # echoed when config.headers is unset
    assert "Vary" not in pre.headers and "Access-Control-Max-Age" not in pre.headers
    simple = requests.get(gw.url + "/open", timeout=5)  # no Origin: allow_origin_absent (default true)
    assert simple.headers["Access-Control-Allow-Origin"] == "*"


def test_preflight_continue_goes_to_the_service(gw):
    resp = _preflight(gw, "/delegated", APP)
    assert resp.status_code == 200
    assert resp.json()["request"]["method"] == "OPTIONS"  # the echo service answered
    assert "Access-Control-Allow-Origin" not in resp.headers  # skip_response_headers: nothing added


def test_cors_headers_on_a_plugin_exit(gw):
    resp = requests.get(gw.url + "/denied", headers={"Origin": "https://other.example"}, timeout=5)
    assert resp.status_code == 401
    assert resp.headers["Access-Control-Allow-Origin"] == "https://other.example"
    assert resp.headers["Vary"] == "Origin"
