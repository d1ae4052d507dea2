"""sv-jwt end to end: client → emulator (strict) → real sv-jwt plugin server → sample backend.

Tokens are signed by keys generated in the test and served by a local JWKS server; the same paths with REAL
auth-service tokens (and the full attack list of issue 4) are in test_jwt_real_tokens.py. What the backend received
is asserted from its echo.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
import requests
from e2e_support import repo_plugin

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "kong_plugins"))
from test_jwt_kit import AUDIENCE, ISSUER, JwksServer, dead_url, mint

SPOOFS = {"X-User-Id": "admin-1", "X-User-Role": "admin", "X-Content-Rating": "R", "X-Sv-Debug": "1"}


def kong_yml(backend_url: str, jwks_url: str) -> str:
    pad = "\n" + " " * 14
    config = pad.join(("", f"jwks_url: {jwks_url}", f"issuer: {ISSUER}", f"audience: {AUDIENCE}", "redis_database: 12"))
    return f"""
_format_version: "3.0"
services:
  - name: echo
    url: {backend_url}/__echo
    routes:
      - name: protected
        paths: ["/protected"]
        plugins:
          - name: sv-jwt
            config:{config}
      - name: public
        paths: ["/public"]
        plugins:
          - name: sv-jwt
            config:{config}{pad}anonymous: true
"""


@pytest.fixture
def jwks():
    server = JwksServer()
    yield server
    server.close()


def bearer(**claims) -> dict[str, str]:
    return {"Authorization": f"Bearer {mint(now=time.time(), **claims)}"}


def test_valid_token_reaches_the_backend_with_verified_identity_only(backend, gateway, jwks):
    gw = gateway(kong_yml(backend["stories"], jwks.url), [repo_plugin("sv-jwt")])
    resp = requests.get(gw.url + "/protected", headers={**bearer(sub="parent-9"), **SPOOFS}, timeout=10)
    assert resp.status_code == 200, resp.text
    received = resp.json()["request"]["headers"]
    assert received["X-User-Id"] == "parent-9" and received["X-User-Role"] == "parent"
    assert "X-Content-Rating" not in received and "X-Sv-Debug" not in received


def test_spoofed_headers_never_reach_the_backend_on_public_routes(backend, gateway, jwks):
    gw = gateway(kong_yml(backend["stories"], jwks.url), [repo_plugin("sv-jwt")])
    resp = requests.get(gw.url + "/public", headers=SPOOFS, timeout=10)
    assert resp.status_code == 200, resp.text
    received = {name.lower() for name in resp.json()["request"]["headers"]}
    assert not received & {name.lower() for name in SPOOFS}


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer nope"}, {"Authorization": f"Bearer {mint(aud='other')}"}],
)
def test_protected_route_without_a_valid_token_is_401_problem(backend, gateway, jwks, headers):
    gw = gateway(kong_yml(backend["stories"], jwks.url), [repo_plugin("sv-jwt")])
    resp = requests.get(gw.url + "/protected", headers=headers, timeout=10)
    assert resp.status_code == 401
    assert resp.headers["Content-Type"] == "application/problem+json"
    assert resp.headers["WWW-Authenticate"].startswith('Bearer realm="storyverse"')
    assert resp.json()["status"] == 401


def test_public_route_with_an_invalid_token_is_401(backend, gateway, jwks):
    gw = gateway(kong_yml(backend["stories"], jwks.url), [repo_plugin("sv-jwt")])
    resp = requests.get(gw.url + "/public", headers={"Authorization": "Bearer x.y.z"}, timeout=10)
    assert resp.status_code == 401


def test_jwks_down_at_cold_start_is_503(backend, gateway):
    gw = gateway(kong_yml(backend["stories"], dead_url()), [repo_plugin("sv-jwt")])
    resp = requests.get(gw.url + "/protected", headers=bearer(), timeout=10)
    assert resp.status_code == 503 and resp.json()["code"] == "auth_unavailable"
