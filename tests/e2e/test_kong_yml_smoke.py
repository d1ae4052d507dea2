"""kong.yml through the real emulator process.

1. The repository's own kong.conf + kong.yml, started as `make run` starts them (KONG_* overrides from
   kong_emulator.config.localenv): the stack comes up with every plugin server, runs `cors` natively,
   answers an unlisted path with Kong's 404 and an authenticated route without a token with a 401 problem document.
2. The same kong.yml rendered for this test's hosts (the real auth service and sample backend fixtures): a parent
   registers and logs in through the gateway (canonical path and alias), and reaches the stories service.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests
from e2e_support import REPO, KongGateway, auth_env, repo_plugins, start_auth_service
from kong_emulator.testing import free_port, wait_port

PASSWORD = "kong-yml smoke correct horse battery"
AUTH_DB, AUTH_REDIS_DB, ISSUER = "storyverse_e2e_kong_yml", 13, "http://storyverse.test"


def generator():
    import storyverse_gateway_config as gateway_config

    return gateway_config


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """`python -m kong_emulator -c kong.conf` with the repository's kong.yml, as scripts/run_stack.py runs it."""
    prefix = tmp_path_factory.mktemp("kong-prefix")
    port = free_port()
    sys.path.insert(0, str(REPO / "scripts"))
    from run_stack import local_environ  # the image paths kong.conf names, relocated to the checkout

    env = local_environ(
        REPO, prefix, KONG_DECLARATIVE_CONFIG=str(REPO / "kong.yml"), KONG_PROXY_LISTEN=f"127.0.0.1:{port}"
    )
    log = Path(prefix) / "emulator.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "kong_emulator", "-c", "kong.conf"], cwd=REPO, env=env, stdout=out, stderr=out
        )
    try:
        wait_port(port, seconds=30, proc=proc)
        yield {"url": f"http://127.0.0.1:{port}", "log": log}
    finally:
        proc.terminate()
        proc.wait(15)


def test_the_stack_starts_and_reports_what_it_cannot_run(stack):
    text = stack["log"].read_text(errors="replace")
    assert "bundled plugin 'cors' (" in text and "runs natively in Python" in text
    assert "runs natively in LuaJIT" in text  # the guard and the version-path pre-function
    assert "NOT applied" not in text  # every bundled plugin kong.yml names runs in the emulator
    assert "STRICT MODE" not in text


@pytest.mark.parametrize("path", ["/nope", "/api/v1/stories/abc", "/healthz", "/api/v2/stories"])
def test_an_unlisted_path_gets_kongs_404(stack, path):
    resp = requests.get(stack["url"] + path, timeout=10)
    assert resp.status_code == 404
    assert "no Route matched with those values" in resp.text
    # one error format: Kong's own 404 is an RFC 9457 document too (error template + problem_format.lua)
    assert resp.headers["Content-Type"].startswith("application/problem+json")
    body = resp.json()
    assert body["status"] == 404 and body["code"] == "route_not_found" and body["request_id"]


@pytest.mark.parametrize("path", ["/api/v1/stories", "/api/stories", "/api/v1/generate/text", "/api/v1/auth/me"])
def test_an_authenticated_route_without_a_token_is_401(stack, path):
    method = "POST" if "generate" in path else "GET"
    resp = requests.request(method, stack["url"] + path, timeout=10)
    assert resp.status_code == 401
    assert resp.headers["Content-Type"].startswith("application/problem+json")
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    assert resp.json()["request_id"] == resp.headers["X-Request-Id"]


def test_a_non_preflight_options_never_reaches_a_backend(stack):
    resp = requests.options(stack["url"] + "/api/v1/stories", timeout=10)
    assert resp.status_code == 204  # `cors` answers only real preflights; the preflight route's chunk answers this


@pytest.fixture(scope="module")
def auth(tmp_path_factory):
    """The real auth service on its own database and Redis db. Not the shared `auth_service` fixture: its readiness
    probe gives up on the first /healthz slower than 2 s, which a busy machine's fresh gunicorn workers exceed."""
    import redis

    redis.Redis(db=AUTH_REDIS_DB).flushdb()
    port = free_port()
    proc = start_auth_service(port, auth_env(AUTH_DB, AUTH_REDIS_DB, ISSUER))
    url = f"http://127.0.0.1:{port}"
    try:
        wait_port(port, seconds=60, proc=proc)
        for _ in range(60):
            try:
                if requests.get(url + "/healthz", timeout=10).status_code == 200:
                    break
            except requests.RequestException:
                time.sleep(0.5)
        yield {"url": url, "issuer": ISSUER, "jwks_url": url + "/.well-known/jwks.json", "redis_db": AUTH_REDIS_DB}
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture(scope="module")
def gateway_for_fixtures(auth, backend):
    auth_service = auth
    gen = generator()
    services = {"auth": auth_service["url"], **backend}
    settings = gen.load_settings(
        overrides={
            "services": services,
            "jwt": {"jwks_url": auth_service["jwks_url"], "issuer": auth_service["issuer"]},
            "redis": {"redis_database": auth_service["redis_db"]},  # sv-jwt reads the auth service's denylist
        }
    )
    gw = KongGateway(gen.render(settings), repo_plugins()).start()
    wait_port(gw.port)
    try:
        yield gw
    finally:
        failures = gw.strict_failures()
        gw.stop()
        assert not failures, failures


def test_a_parent_signs_up_and_reaches_the_stories_service(gateway_for_fixtures):
    url = gateway_for_fixtures.url
    email = f"smoke-{uuid.uuid4().hex[:12]}@example.com"
    body = {"email": email, "password": PASSWORD, "display_name": "Smoke Parent", "time_zone": "Europe/Paris"}
    assert requests.post(url + "/api/v1/auth/register", json=body, timeout=10).status_code == 202
    login = requests.post(url + "/api/auth/login", json={"email": email, "password": PASSWORD}, timeout=10)
    assert login.status_code == 200, login.text
    auth = {"Authorization": f"Bearer {login.json()['access_token']}"}

    me = requests.get(url + "/api/v1/auth/me", headers=auth, timeout=10)
    assert me.status_code == 200, me.text  # /api/v1/auth/me reached the auth service's /api/auth/me
    created = requests.post(url + "/api/v1/stories", json={"title": "The sleepy fox"}, headers=auth, timeout=10)
    assert created.status_code == 201, created.text
    assert created.headers["X-Quota-Remaining"] == "4"  # basic tier: 5 stories a day
    story = created.json()["item"]
    same = requests.get(f"{url}/api/stories/{story['id']}", headers=auth, timeout=10)  # the alias
    assert same.status_code == 200 and same.json()["item"] == story
    assert same.json()["received_identity"]["X-User-Role"] == "parent"
    assert requests.delete(f"{url}/api/v1/stories/{story['id']}", headers=auth, timeout=10).status_code == 204
    assert requests.get(url + "/.well-known/jwks.json", timeout=10).json()["keys"]
    forged = {"Authorization": "Bearer " + login.json()["access_token"][:-4] + "AAAA"}
    assert requests.get(url + "/api/v1/stories", headers=forged, timeout=10).status_code == 401


# -- client identity headers never reach a backend (docs/architecture.md §8), sv-jwt's headers set by sv-edge --
SPOOFS = {"X-User-Id": "admin-1", "X-User-Role": "admin", "X_User_Id": "admin-2", "X-Sv-Debug": "1", "x-sv-Role": "x"}
IDENTITY = {"x-user-id", "x-user-role", "x-family-id", "x-account-tier", "x-content-rating"}


@pytest.fixture(scope="module")
def echo_server():
    """Answers every request with the headers it received, as a list of [name, value] (underscores and all)."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Echo(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            body = json.dumps({"path": self.path, "headers": list(self.headers.items())}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _answer

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


@pytest.fixture(scope="module")
def echo_gateway(auth, echo_server):
    """The generated kong.yml with every service pointing at the echo server; tokens from the real auth service."""
    gen = generator()
    settings = gen.load_settings(
        overrides={
            "services": {name: echo_server for name in gen.load_settings()["services"]},
            "jwt": {"jwks_url": auth["jwks_url"], "issuer": auth["issuer"]},
            "redis": {"redis_database": auth["redis_db"]},
        }
    )
    gw = KongGateway(gen.render(settings), repo_plugins()).start()
    wait_port(gw.port)
    try:
        yield gw
    finally:
        failures = gw.strict_failures()
        gw.stop()
        assert not failures, failures


def _token(auth) -> tuple[str, str]:
    import base64
    import json

    email = f"echo-{uuid.uuid4().hex[:12]}@example.com"
    body = {"email": email, "password": PASSWORD, "display_name": "Echo Parent", "time_zone": "Europe/Paris"}
    assert requests.post(auth["url"] + "/api/auth/register", json=body, timeout=10).status_code == 202
    login = requests.post(auth["url"] + "/api/auth/login", json={"email": email, "password": PASSWORD}, timeout=10)
    token = login.json()["access_token"]
    payload = token.split(".")[1]
    sub = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["sub"]
    return token, sub


def _identity_headers(resp) -> dict[str, list[str]]:
    assert resp.status_code == 200, resp.text
    out: dict[str, list[str]] = {}
    for name, value in resp.json()["headers"]:
        norm = name.lower().replace("_", "-")
        if norm in IDENTITY or norm.startswith("x-sv-"):
            out.setdefault(norm, []).append(value)
    return out


def test_identity_headers_reach_backends_only_from_sv_jwt(echo_gateway, auth):
    url = echo_gateway.url
    token, sub = _token(auth)
    bearer = {"Authorization": f"Bearer {token}"}
    for method, path in [("GET", "/api/v1/stories"), ("GET", "/api/v1/universes"), ("POST", "/api/v1/auth/login")]:
        # authenticated (the guard sets them), cached (sv-jwt sets them: proxy-cache keys on X-User-Id), public
        got = _identity_headers(requests.request(method, url + path, headers={**bearer, **SPOOFS}, timeout=10))
        assert got["x-user-id"] == [sub] and got["x-user-role"] == ["parent"], (path, got)
        assert not [k for k in got if k.startswith("x-sv-")], (path, got)
    # a public route without a token: no identity at all, every client copy removed (public_identity.lua)
    got = _identity_headers(requests.post(url + "/api/v1/auth/login", headers=SPOOFS, json={}, timeout=10))
    assert got == {}, got
