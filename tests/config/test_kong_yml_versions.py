"""Versioning through the real emulator process (it runs sv-edge's Lua natively, and our plugin servers):
the version is stripped from the upstream path, the alias follows the current version, a deprecated version answers
with Deprecation/Sunset/Link headers, and a retired one with 410 Gone. The configs are rendered by the generator with
v1 deprecated or retired next to a current v2, and every service pointed at a local echo upstream.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import redis
import requests
from kong_emulator.testing import EmulatorProcess, PluginEntry
from kong_yml_support import OUR_PLUGINS, REPO, edge_conf, generator

REDIS_DB = 12  # this module's own Redis db (sv-quota's per-IP counters), flushed first
V1_DEPRECATED = {"name": "v1", "status": "deprecated", "deprecation": "2026-01-01", "sunset": "2026-07-01",
                 "successor": "v2"}  # fmt: skip


class Echo(BaseHTTPRequestHandler):
    """Answers every request with the path and headers it received."""

    def _answer(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = json.dumps({"path": self.path, "headers": dict(self.headers)}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _answer

    def log_message(self, *_args) -> None:
        pass


@pytest.fixture(scope="module")
def echo():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def start(echo: str, versions: list[dict]) -> EmulatorProcess:
    redis.Redis(db=REDIS_DB).flushdb()
    gen = generator()
    names = ("auth", "stories", "characters", "universes", "generation")
    settings = gen.load_settings(
        overrides={"services": dict.fromkeys(names, echo), "redis": {"redis_database": REDIS_DB}, "versions": versions}
    )
    plugins = [PluginEntry(n, REPO / "kong-plugins" / "plugins" / f"{n}.py") for n in OUR_PLUGINS]
    return EmulatorProcess(gen.render(settings), plugins, strict=False, conf_extra=edge_conf(OUR_PLUGINS)).start()


@pytest.fixture(scope="module")
def deprecated(echo):
    gw = start(echo, [V1_DEPRECATED, {"name": "v2", "status": "current"}])
    yield gw
    failures = gw.strict_failures()
    gw.stop()
    assert not failures


@pytest.fixture(scope="module")
def retired(echo):
    gw = start(echo, [{**V1_DEPRECATED, "status": "retired"}, {"name": "v2", "status": "current"}])
    yield gw
    failures = gw.strict_failures()
    gw.stop()
    assert not failures


def test_a_deprecated_version_still_answers_with_deprecation_headers(deprecated):
    resp = requests.post(deprecated.url + "/api/v1/auth/login?x=1", json={}, timeout=10)
    assert resp.status_code == 200
    assert resp.json()["path"] == "/api/auth/login?x=1"  # version stripped, query kept
    assert resp.headers["Deprecation"] == "@1767225600"  # 2026-01-01T00:00:00Z, RFC 9745
    assert resp.headers["Sunset"] == "Wed, 01 Jul 2026 00:00:00 GMT"  # RFC 8594
    assert 'rel="successor-version"' in resp.headers["Link"] and "</api/v2>" in resp.headers["Link"]
    assert resp.headers["X-Request-Id"]


def test_the_deprecated_version_keeps_its_guard_and_authentication(deprecated):
    resp = requests.get(deprecated.url + "/api/v1/stories", timeout=10)
    assert resp.status_code == 401
    assert resp.headers["Content-Type"].startswith("application/problem+json")
    # Kong also runs the route's header_filter on this short-circuited 401 (its collected plugins), so the client
    # sees Deprecation there too; the emulator runs response-phase plugins only on proxied responses.
    assert resp.json()["code"]


@pytest.mark.parametrize("path", ["/api/v2/auth/login", "/api/auth/login"])
def test_the_current_version_and_the_alias_have_no_deprecation(deprecated, path):
    resp = requests.post(deprecated.url + path, json={}, timeout=10)
    assert resp.status_code == 200
    assert resp.json()["path"] == "/api/auth/login"
    assert "Deprecation" not in resp.headers and "Sunset" not in resp.headers


def test_unversioned_endpoints_keep_their_path(deprecated):
    resp = requests.get(deprecated.url + "/.well-known/jwks.json", timeout=10)
    assert resp.status_code == 200 and resp.json()["path"] == "/.well-known/jwks.json"
    assert "Deprecation" not in resp.headers


@pytest.mark.parametrize("path", ["/api/v1/stories", "/api/v1/auth/login", "/api/v1/anything/else", "/api/v1"])
def test_a_retired_version_is_410_gone(retired, path):
    resp = requests.post(retired.url + path, json={}, timeout=10)
    assert resp.status_code == 410
    assert resp.headers["Content-Type"].startswith("application/problem+json")
    body = resp.json()
    assert body["code"] == "api_version_retired" and body["status"] == 410
    assert body["request_id"] == resp.headers["X-Request-Id"]
    assert "/api/v2" in body["detail"]
    assert resp.headers["Sunset"] == "Wed, 01 Jul 2026 00:00:00 GMT"


def test_the_successor_still_works_after_retirement(retired):
    assert requests.post(retired.url + "/api/v2/auth/login", json={}, timeout=10).status_code == 200
    assert requests.get(retired.url + "/api/stories", timeout=10).status_code == 401
