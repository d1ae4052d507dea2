"""OAuth 2.1 / OIDC end to end: the real auth service under gunicorn, a client registered with its CLI, the code +
PKCE flow driven by Authlib's OAuth2Session and by headless Chromium through the consent page, and the tokens sent
through the emulator to the real sv-jwt plugin server and the sample backend.

The auth service runs on its own database (storyverse_e2e_oauth) and Redis db 10 (sv-jwt reads its denylist there),
started with the same helpers as the shared `auth_service` fixture. Chromium and chromedriver are Debian packages;
`make test` installs them first (scripts/ensure-browser.sh, with its progress); the `chromium` fixture runs the same
script when they are missing, and installs selenium (pip, pinned by constraints.txt) if it is.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest
import redis
import requests
from authlib.integrations.requests_client import OAuth2Session
from browser_support import chromium_driver
from e2e_support import AUTH_DIR, KongGateway, auth_env, repo_plugin, start_auth_service
from kong_emulator.testing import free_port, wait_port

ISSUER = "http://storyverse.test"
REDIS_DB = 10
PASSWORD = "correct horse battery staple twice"


class Callback:
    """A tiny local HTTP server standing in for the client's redirect URI: it captures the authorization response."""

    def __init__(self) -> None:
        captured: list[dict[str, str]] = []
        self.captured = captured

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                if parts.path == "/callback":  # not /favicon.ico
                    captured.append({k: v[0] for k, v in parse_qs(parts.query).items()})
                body = b"<!doctype html><title>Connected</title><p id=done>You can close this window.</p>"
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/callback"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def callback():
    server = Callback()
    yield server
    server.close()


@pytest.fixture(scope="module")
def provider():
    """The auth service (gunicorn) on storyverse_e2e_oauth + Redis db 10: {"url", "env"}."""
    port = free_port()
    env = auth_env("storyverse_e2e_oauth", REDIS_DB, ISSUER)
    redis.Redis(db=REDIS_DB).flushdb()
    proc = start_auth_service(port, env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_port(port, seconds=60, proc=proc)
        _wait_healthy(url + "/healthz", proc)
        yield {"url": url, "env": env}
    finally:
        proc.terminate()
        proc.wait(10)


def _wait_healthy(url: str, proc, seconds: float = 60.0) -> None:
    import time

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"auth service exited with {proc.returncode}")
        try:
            if requests.get(url, timeout=5).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"auth service not healthy at {url}")


def flask_cli(provider, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "flask", *args], cwd=AUTH_DIR, env=provider["env"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def registered(provider, callback):
    """A public client registered with `flask oauth-clients create`, and a parent account."""
    created = json.loads(
        flask_cli(
            provider,
            "oauth-clients",
            "create",
            "--name",
            "Bedtime Reader",
            "--type",
            "public",
            "--redirect-uri",
            callback.url,
            "--json",
        )
    )
    assert created["client_secret"] is None
    body = {"email": "e2e-parent@example.com", "password": PASSWORD, "display_name": "Pat", "time_zone": "UTC"}
    assert requests.post(provider["url"] + "/api/auth/register", json=body, timeout=10).status_code == 202
    return {"client_id": created["client_id"], "email": body["email"]}


@pytest.fixture(scope="module")
def gw(provider, backend):

    config = {
        "jwks_url": provider["url"] + "/.well-known/jwks.json",
        "issuer": ISSUER,
        "audience": "storyverse-api",
        "redis_database": REDIS_DB,
        "denylist_cache_ms": 0,
    }
    plugin = json.dumps({"name": "sv-jwt", "config": config})
    yml = (
        '_format_version: "3.0"\nservices:\n  - name: echo\n'
        f"    url: {backend['stories']}/__echo\n    routes:\n"
        f'      - name: protected\n        paths: ["/protected"]\n        plugins: [{plugin}]\n'
    )
    gateway = KongGateway(yml, [repo_plugin("sv-jwt")]).start()
    try:
        yield gateway
    finally:
        failures = gateway.strict_failures()
        gateway.stop()
        assert not failures, "plugin protocol failures in strict mode:\n" + "\n".join(failures)


def through_gateway(gw, token: str) -> requests.Response:
    return requests.get(gw.url + "/protected", headers={"Authorization": f"Bearer {token}"}, timeout=10)


def session_for(provider, registered, callback) -> OAuth2Session:
    return OAuth2Session(
        registered["client_id"],
        redirect_uri=callback.url,
        scope="openid profile email",
        code_challenge_method="S256",
        token_endpoint_auth_method="none",
    )


def _consent_with_requests(url: str, email: str) -> str:
    """What a browser without JavaScript does: GET the page, POST its form. Returns the redirect Location."""
    import html
    import re

    browser = requests.Session()
    page = browser.get(url, timeout=10)
    assert page.status_code == 200, page.text
    csrf = html.unescape(re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1))
    hidden = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', page.text))
    form = {k: html.unescape(v) for k, v in hidden.items()}
    form.update(csrf_token=csrf, action="approve", email=email, password=PASSWORD)
    answer = browser.post(url.split("?")[0], data=form, allow_redirects=False, timeout=10)
    assert answer.status_code == 302, answer.text
    return answer.headers["Location"]


def test_code_pkce_with_authlib_client_passes_sv_jwt_and_id_token_does_not(provider, registered, callback, gw):
    session = session_for(provider, registered, callback)
    verifier = secrets.token_urlsafe(48)
    url, _state = session.create_authorization_url(
        provider["url"] + "/oauth/authorize", code_verifier=verifier, nonce="e2e-nonce"
    )
    location = _consent_with_requests(url, registered["email"])
    token = session.fetch_token(
        provider["url"] + "/oauth/token", authorization_response=location, code_verifier=verifier
    )
    claims = jwt.decode(token["access_token"], options={"verify_signature": False})
    assert claims["iss"] == ISSUER and claims["client_id"] == registered["client_id"]

    passed = through_gateway(gw, token["access_token"])
    assert passed.status_code == 200, passed.text
    received = passed.json()["request"]["headers"]
    assert received["X-User-Id"] == claims["sub"] and received["X-User-Role"] == "parent"

    # the ID token is signed by the RS256 key (published in the same JWKS) but is not an access token: typ JWT,
    # aud = the client
    assert jwt.get_unverified_header(token["id_token"])["typ"] == "JWT"
    assert jwt.get_unverified_header(token["id_token"])["alg"] == "RS256"
    refused = through_gateway(gw, token["id_token"])
    assert refused.status_code == 401 and refused.headers["Content-Type"] == "application/problem+json"

    refreshed = session.refresh_token(provider["url"] + "/oauth/token")
    assert through_gateway(gw, refreshed["access_token"]).status_code == 200
    # revoking the refresh token revokes the grant: its access tokens are denylisted (sid) at the gateway
    session.revoke_token(provider["url"] + "/oauth/revoke", refreshed["refresh_token"], token_type_hint="refresh_token")
    assert through_gateway(gw, refreshed["access_token"]).status_code == 401


def test_negative_paths_against_the_running_service(provider, registered, callback):
    """Reused code and wrong verifier over real HTTP (the full list runs in tests/auth_service)."""
    session = session_for(provider, registered, callback)
    verifier = secrets.token_urlsafe(48)
    url, _ = session.create_authorization_url(provider["url"] + "/oauth/authorize", code_verifier=verifier)
    code = parse_qs(urlsplit(_consent_with_requests(url, registered["email"])).query)["code"][0]
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": callback.url}
    form["client_id"] = registered["client_id"]
    wrong = requests.post(provider["url"] + "/oauth/token", data={**form, "code_verifier": "x" * 43}, timeout=10)
    assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant"
    reused = requests.post(provider["url"] + "/oauth/token", data={**form, "code_verifier": verifier}, timeout=10)
    assert reused.status_code == 400 and reused.json()["error"] == "invalid_grant"
    implicit = requests.get(url.replace("response_type=code", "response_type=token"), allow_redirects=False, timeout=10)
    assert implicit.status_code == 302 and "error=unsupported_response_type" in implicit.headers["Location"]
    password = requests.post(
        provider["url"] + "/oauth/token",
        data={**form, "grant_type": "password", "username": registered["email"], "password": PASSWORD},
        timeout=10,
    )
    assert password.status_code == 400 and password.json()["error"] == "unsupported_grant_type"


def test_discovery_document_of_the_running_service(provider):
    doc = requests.get(provider["url"] + "/.well-known/openid-configuration", timeout=10).json()
    assert doc["issuer"] == ISSUER and doc["authorization_endpoint"] == ISSUER + "/oauth/authorize"
    assert doc["response_types_supported"] == ["code"] and doc["code_challenge_methods_supported"] == ["S256"]


# --- headless Chromium through the consent page -------------------------------------------------------------------


@pytest.fixture(scope="module")
def chromium():
    with chromium_driver() as driver:  # browser_support installs chromium, chromedriver and selenium when missing
        yield driver


def _pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def test_parent_approves_in_headless_chromium_and_the_tokens_pass_sv_jwt(provider, registered, callback, gw, chromium):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    session = session_for(provider, registered, callback)
    verifier = secrets.token_urlsafe(48)
    url, state = session.create_authorization_url(provider["url"] + "/oauth/authorize", code_verifier=verifier)
    before = len(callback.captured)
    chromium.get(url)
    assert "Bedtime Reader" in chromium.find_element(By.TAG_NAME, "h1").text
    chromium.find_element(By.ID, "email").send_keys(registered["email"])
    chromium.find_element(By.ID, "password").send_keys(PASSWORD)
    chromium.find_element(By.ID, "approve").click()
    WebDriverWait(chromium, 30).until(lambda _: len(callback.captured) > before)
    WebDriverWait(chromium, 30).until(lambda d: d.current_url.startswith(callback.url))
    assert chromium.find_element(By.ID, "done")
    response = callback.captured[-1]
    assert response["state"] == state and "code" in response, response

    token = session.fetch_token(
        provider["url"] + "/oauth/token", code=response["code"], code_verifier=verifier, state=state
    )
    passed = through_gateway(gw, token["access_token"])
    assert passed.status_code == 200, passed.text
    assert passed.json()["request"]["headers"]["X-User-Role"] == "parent"
    assert through_gateway(gw, token["id_token"]).status_code == 401


def test_wrong_password_in_chromium_stays_on_the_page_and_deny_returns_access_denied(
    provider, registered, callback, chromium
):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    session = session_for(provider, registered, callback)
    url, state = session.create_authorization_url(provider["url"] + "/oauth/authorize", code_verifier=_pkce()[0])
    chromium.get(url)
    chromium.find_element(By.ID, "email").send_keys(registered["email"])
    chromium.find_element(By.ID, "password").send_keys("not the password at all")
    chromium.find_element(By.ID, "approve").click()
    WebDriverWait(chromium, 30).until(lambda d: d.find_elements(By.ID, "message"))
    assert "incorrect" in chromium.find_element(By.ID, "message").text
    before = len(callback.captured)
    chromium.find_element(By.ID, "deny").click()
    WebDriverWait(chromium, 30).until(lambda _: len(callback.captured) > before)
    assert callback.captured[-1]["error"] == "access_denied" and callback.captured[-1]["state"] == state
