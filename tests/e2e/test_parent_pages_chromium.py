"""The parent pages (issue 20) in headless Chromium, through the emulator gateway with the repository's kong.yml: a
parent signs in, enters a device's code and approves it (the device's poll then gets tokens that pass the gateway),
denies another (its poll answers access_denied), and on the family page sees the children and signs one out of a
device (its token is refused at the gateway from then on); after a child creates two stories through the gateway
(sv-quota counts them), the family page shows 2 used today for the family and for that child. A POST without the
CSRF token is a 403, and every page refuses framing (CSP frame-ancestors 'none', X-Frame-Options DENY). The OAuth
side of issue 20 on the same stack: RFC 9207 `iss` on the authorization redirects (success and error) through the
gateway, the app in the connected-apps API and on the family page, disconnected there (its access token refused at
the gateway, its refresh token dead), and a password change revoking a second grant the same way.

Real parts: the auth service under gunicorn (PostgreSQL, Redis db 13), the emulator with every plugin server, the
sample backend. Chromium and chromedriver are Debian packages (browser_support installs them when missing).
Screenshots go to the test's tmp dir; their paths are printed.
"""

from __future__ import annotations

import time
import uuid
from urllib.parse import urlsplit

import pytest
import redis
import requests
from browser_support import chromium_driver
from e2e_support import KongGateway, auth_env, render_kong_yml, repo_plugins, start_auth_service
from kong_emulator.testing import free_port, wait_port

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

REDIS_DB = 13
DATABASE = "storyverse_e2e_pages"
ISSUER = "http://pages.storyverse.test"
PASSWORD = "a long and quiet bedtime password"
PIN = "7351"
TABLET = "Kitchen tablet (StoryVerse Kids 2.1)"


@pytest.fixture(scope="module")
def gw(backend):
    redis.Redis(db=REDIS_DB).flushdb()
    port, gw_port = free_port(), free_port()
    auth_url = f"http://127.0.0.1:{port}"
    env = auth_env(DATABASE, REDIS_DB, ISSUER, DEVICE_POLL_INTERVAL="1",
                   DEVICE_VERIFICATION_URI=f"http://127.0.0.1:{gw_port}/parent/device")  # fmt: skip
    gateway = KongGateway(render_kong_yml(auth_url, backend, ISSUER, REDIS_DB), repo_plugins(), port=gw_port)
    gateway.conf_extra = {"trusted_ips": "127.0.0.1"}
    print("starting the auth service and the gateway", flush=True)
    auth = start_auth_service(port, env)
    try:
        wait_port(port, seconds=60, proc=auth)
        gateway.start()
        gateway.auth_env = env
        yield gateway
    finally:
        failures = gateway.strict_failures()
        gateway.stop()
        auth.terminate()
        auth.wait(10)
    assert not failures, "\n".join(failures)


def api(gw, method: str, path: str, body=None, token: str | None = None, **headers: str) -> requests.Response:
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return requests.request(method, gw.url + path, json=body, headers=headers, timeout=30)


@pytest.fixture(scope="module")
def family(gw) -> dict:
    """A parent (API sign-up through the gateway), two consented children, one signed in on a tablet."""
    email = f"pages-{uuid.uuid4().hex[:8]}@example.com"
    body = {"email": email, "password": PASSWORD, "display_name": "Robin", "time_zone": "Europe/London"}
    assert api(gw, "POST", "/api/v1/auth/register", body).status_code == 202
    login = api(gw, "POST", "/api/v1/auth/login", {"email": email, "password": PASSWORD})
    assert login.status_code == 200, login.text
    token = login.json()["access_token"]
    kids = {}
    for username in ("ada", "ben"):
        child = {"display_name": username.title(), "username": username, "birth_year": 2017, "pin": PIN,
                 "controls": {"features": ["text"], "allowed_hours": "00:00-24:00"}}  # fmt: skip
        created = api(gw, "POST", "/api/v1/auth/children", child, token)
        assert created.status_code == 201, created.text
        token = created.json()["caller_token"]["access_token"]
        kids[username] = created.json()["id"]
        consent = {"policy_version": "2026-04-22", "agreed": ["profile"], "password": PASSWORD}
        assert api(gw, "POST", f"/api/v1/auth/children/{kids[username]}/consent", consent, token).status_code == 201
    code = api(gw, "GET", "/api/v1/auth/family", token=token).json()["family_code"]
    tablet = api(gw, "POST", "/api/v1/auth/child/login", {"family_code": code, "username": "ben", "pin": PIN},
                 **{"User-Agent": TABLET})  # fmt: skip
    assert tablet.status_code == 200, tablet.text
    return {"email": email, "kids": kids, "tablet_token": tablet.json()["access_token"], "token": token}


@pytest.fixture(scope="module")
def browser():
    with chromium_driver() as driver:
        yield driver


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    folder = tmp_path_factory.mktemp("parent-pages-screenshots")
    taken: list[str] = []

    def shot(driver, name: str) -> None:
        path = folder / f"{len(taken) + 1:02d}-{name}.png"
        assert driver.save_screenshot(str(path)), f"no screenshot at {path}"
        taken.append(str(path))
        print(f"screenshot: {path}", flush=True)

    yield shot
    print("screenshots:\n" + "\n".join(taken), flush=True)


def _device_code(gw) -> dict:
    started = api(gw, "POST", "/api/v1/auth/device/code", {"client_name": "living-room TV"})
    assert started.status_code == 200, started.text
    return started.json()


def _poll(gw, grant: dict) -> requests.Response:
    time.sleep(grant["interval"])
    return api(gw, "POST", "/api/v1/auth/device/token", {"device_code": grant["device_code"]})


def _by_id(driver, element_id: str):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, 30).until(lambda d: d.find_element(By.ID, element_id))


def _open_signed_in(driver, url: str, email: str) -> None:
    """Open ``url``; when the page session is gone (a test run alone), sign in on the way."""
    driver.get(url)
    if urlsplit(driver.current_url).path == "/parent/sign-in":
        _by_id(driver, "email").send_keys(email)
        _by_id(driver, "password").send_keys(PASSWORD)
        _by_id(driver, "sign-in").click()
        _by_id(driver, "main")
    assert urlsplit(driver.current_url).path == urlsplit(url).path, driver.current_url


def test_parent_signs_in_and_approves_a_device_whose_poll_gets_tokens(gw, family, browser, shots):
    from selenium.webdriver.common.by import By

    grant = _device_code(gw)
    assert urlsplit(grant["verification_uri"]).path == "/parent/device"
    assert grant["verification_uri_complete"].startswith(gw.url + "/parent/device?user_code=")
    browser.get(grant["verification_uri_complete"])  # signed out: the sign-in page first, coming back after
    assert urlsplit(browser.current_url).path == "/parent/sign-in"
    assert browser.find_element(By.TAG_NAME, "h1").text == "Parent sign-in"
    shots(browser, "sign-in")
    _by_id(browser, "email").send_keys(family["email"])
    _by_id(browser, "password").send_keys(PASSWORD)
    _by_id(browser, "sign-in").click()
    code_box = _by_id(browser, "user_code")
    assert urlsplit(browser.current_url).path == "/parent/device"
    assert code_box.get_attribute("value") == grant["user_code"]  # prefilled from verification_uri_complete
    assert _poll(gw, grant).json()["code"] == "authorization_pending"
    browser.find_element(By.ID, f"child-{family['kids']['ada']}").click()
    shots(browser, "device-code-prefilled")
    browser.find_element(By.ID, "approve").click()
    assert "signing in as Ada" in _by_id(browser, "result").text
    shots(browser, "device-approved")
    tokens = _poll(gw, grant)
    assert tokens.status_code == 200, tokens.text
    me = api(gw, "GET", "/api/v1/auth/me", token=tokens.json()["access_token"])
    assert me.status_code == 200 and me.json()["id"] == family["kids"]["ada"], me.text


def test_deny_makes_the_devices_poll_answer_access_denied(gw, family, browser, shots):
    grant = _device_code(gw)
    _open_signed_in(browser, grant["verification_uri_complete"], family["email"])  # the page-session cookie
    assert _by_id(browser, "user_code").get_attribute("value") == grant["user_code"]
    _by_id(browser, "deny").click()
    assert "not allowed" in _by_id(browser, "result").text
    shots(browser, "device-denied")
    denied = _poll(gw, grant)
    assert denied.status_code == 400 and denied.json()["code"] == "access_denied", denied.text


def test_family_page_lists_children_and_signs_a_child_out_of_a_device(gw, family, browser, shots):
    from selenium.webdriver.common.by import By

    assert api(gw, "GET", "/api/v1/auth/me", token=family["tablet_token"]).status_code == 200
    _open_signed_in(browser, gw.url + "/parent/family", family["email"])
    headings = [h.text for h in browser.find_elements(By.TAG_NAME, "h3")]
    assert any(h.startswith("Ada") for h in headings) and any(h.startswith("Ben") for h in headings), headings
    rows = [r for r in browser.find_elements(By.CSS_SELECTOR, "tr.device") if TABLET in r.text]
    assert len(rows) == 1, [r.text for r in browser.find_elements(By.CSS_SELECTOR, "tr.device")]
    shots(browser, "family-page")
    rows[0].find_element(By.TAG_NAME, "button").click()
    assert "signed out" in _by_id(browser, "notice").text
    assert TABLET not in browser.find_element(By.TAG_NAME, "main").text
    shots(browser, "family-device-revoked")
    deadline = time.monotonic() + 10  # sv-jwt may hold a denylist answer briefly (its cache)
    status = 200
    while time.monotonic() < deadline and status == 200:
        status = api(gw, "GET", "/api/v1/auth/me", token=family["tablet_token"]).status_code
        time.sleep(0.2)
    assert status == 401


def _usage_text(driver, element_id: str, url: str, want: str) -> str:
    """The usage line once it says ``want`` (sv-quota-log settles a reservation after the response), else the last."""
    deadline, text = time.monotonic() + 15, ""
    while time.monotonic() < deadline:
        driver.get(url)
        text = _by_id(driver, element_id).text
        if want in text:
            break
        time.sleep(0.3)
    return text


def test_family_page_shows_the_stories_used_today(gw, family, browser, shots):
    code = api(gw, "GET", "/api/v1/auth/family", token=family["token"]).json()["family_code"]
    ada = api(gw, "POST", "/api/v1/auth/child/login", {"family_code": code, "username": "ada", "pin": PIN})
    assert ada.status_code == 200, ada.text
    for n in (1, 2):
        story = api(gw, "POST", "/api/v1/stories", {"title": f"The sleepy dragon {n}"}, ada.json()["access_token"])
        assert story.status_code == 201, story.text
    url = gw.url + "/parent/family"
    _open_signed_in(browser, url, family["email"])
    ada_line = _usage_text(browser, f"usage-{family['kids']['ada']}", url, "Ada: 2 of 5 stories used today")
    assert ada_line == "Ada: 2 of 5 stories used today", ada_line
    assert _by_id(browser, "usage-family").text == "Family: 2 of 5 stories used today"
    assert _by_id(browser, f"usage-{family['kids']['ben']}").text == "Ben: 0 of 5 stories used today"
    shots(browser, "family-usage-today")


def test_a_post_without_the_csrf_token_is_refused(gw, family, browser, shots):
    _open_signed_in(browser, gw.url + "/parent/family", family["email"])
    cookies = {c["name"]: c["value"] for c in browser.get_cookies()}
    assert "sv_parent" in cookies  # the page session (HttpOnly: the browser holds it, scripts cannot read it)
    session_cookie = next(c for c in browser.get_cookies() if c["name"] == "sv_parent")
    assert session_cookie["httpOnly"] and session_cookie["sameSite"] == "Lax"
    grant = _device_code(gw)
    form = {"user_code": grant["user_code"], "child_id": family["kids"]["ada"], "action": "approve"}
    for data in (form, {**form, "csrf_token": "forged"}):
        refused = requests.post(gw.url + "/parent/device", data=data, cookies=cookies, allow_redirects=False,
                                timeout=30)  # fmt: skip
        assert refused.status_code == 403 and "security token" in refused.text, refused.text[:300]
    assert _poll(gw, grant).json()["code"] == "authorization_pending"  # nothing was approved
    # the same in the browser: a form whose token was stripped
    _open_signed_in(browser, grant["verification_uri_complete"], family["email"])
    stripped = browser.execute_script(
        "const inputs = document.querySelectorAll('form[action=\"/parent/device\"] input[name=csrf_token]');"
        "inputs.forEach(e => e.remove()); return inputs.length;"
    )
    assert stripped == 1
    _by_id(browser, "approve").click()
    assert "security token" in _by_id(browser, "message").text
    assert browser.title.startswith("This form has expired")
    shots(browser, "csrf-refused")
    assert _poll(gw, grant).json()["code"] == "authorization_pending"


@pytest.mark.parametrize("path", ["/parent/sign-in", "/parent/device", "/parent/family"])
def test_every_page_refuses_framing(gw, path):
    page = requests.get(gw.url + path, timeout=30)  # signed out: device and family end on the sign-in page
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    for response in [*page.history, page]:
        assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"], response.url
        assert response.headers["X-Frame-Options"] == "DENY", response.url


# -- OAuth (issue 20): iss, connected apps, password change ---------------------------------------------------------

REDIRECT = "http://127.0.0.1:9/callback"  # never fetched: the test reads the Location header


def _register_client(gw) -> str:
    import json
    import subprocess
    import sys

    from e2e_support import AUTH_DIR

    argv = [sys.executable, "-m", "flask", "oauth-clients", "create", "--name", "Bedtime Reader", "--type", "public",
            "--redirect-uri", REDIRECT, "--json"]  # fmt: skip
    done = subprocess.run(argv, cwd=AUTH_DIR, env=gw.auth_env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["client_id"]


def _authorize(gw, client_id: str, email: str, action: str = "approve") -> dict:
    """The consent page through the gateway, as a browser without JavaScript; the redirect's query."""
    import base64
    import hashlib
    import html
    import re
    import secrets
    from urllib.parse import parse_qs

    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    params = {"response_type": "code", "client_id": client_id, "redirect_uri": REDIRECT, "scope": "openid profile",
              "state": secrets.token_urlsafe(8), "code_challenge": challenge,
              "code_challenge_method": "S256"}  # fmt: skip
    web = requests.Session()
    page = web.get(gw.url + "/oauth/authorize", params=params, timeout=30)
    assert page.status_code == 200, page.text[:300]
    csrf = html.unescape(re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1))
    form = {**params, "csrf_token": csrf, "action": action, "email": email, "password": PASSWORD}
    answer = web.post(gw.url + "/oauth/authorize", data=form, allow_redirects=False, timeout=30)
    assert answer.status_code == 302 and answer.headers["Location"].startswith(REDIRECT + "?"), answer.text[:300]
    got = {k: v[0] for k, v in parse_qs(urlsplit(answer.headers["Location"]).query).items()}
    assert got["iss"] == ISSUER and got["state"] == params["state"], got  # RFC 9207
    if action != "approve":
        return got
    token = requests.post(gw.url + "/oauth/token", timeout=30, data={
        "grant_type": "authorization_code", "code": got["code"], "redirect_uri": REDIRECT, "client_id": client_id,
        "code_verifier": verifier})  # fmt: skip
    assert token.status_code == 200, token.text
    return token.json()


def _refused_at_the_gateway(gw, access_token: str) -> bool:
    deadline = time.monotonic() + 10  # sv-jwt may hold a denylist answer briefly (its cache)
    while time.monotonic() < deadline:
        if api(gw, "GET", "/api/v1/auth/me", token=access_token).status_code == 401:
            return True
        time.sleep(0.2)
    return False


def _refresh(gw, client_id: str, refresh_token: str) -> requests.Response:
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": client_id}
    return requests.post(gw.url + "/oauth/token", data=form, timeout=30)


def test_oauth_iss_connected_apps_and_password_change_through_the_gateway(gw, family, browser, shots):
    from selenium.webdriver.common.by import By

    client_id = _register_client(gw)
    assert _authorize(gw, client_id, family["email"], action="deny")["error"] == "access_denied"
    first = _authorize(gw, client_id, family["email"])
    assert api(gw, "GET", "/api/v1/auth/me", token=first["access_token"]).status_code == 200
    apps = api(gw, "GET", "/api/v1/auth/connected-apps", token=family["token"])
    assert apps.status_code == 200 and [a["client_id"] for a in apps.json()["apps"]] == [client_id], apps.text
    refused = api(gw, "GET", "/api/v1/auth/connected-apps", token=family["tablet_token"])
    assert refused.status_code in (401, 403)  # a child (this one's tablet session was ended above: 401)

    _open_signed_in(browser, gw.url + "/parent/family", family["email"])
    app_rows = browser.find_elements(By.CSS_SELECTOR, "li.app")
    assert len(app_rows) == 1 and "Bedtime Reader" in app_rows[0].text
    shots(browser, "family-connected-app")
    app_rows[0].find_element(By.TAG_NAME, "button").click()
    assert "disconnected" in _by_id(browser, "notice").text
    assert not browser.find_elements(By.CSS_SELECTOR, "li.app")
    shots(browser, "family-app-disconnected")
    assert _refused_at_the_gateway(gw, first["access_token"])
    assert _refresh(gw, client_id, first["refresh_token"]).json()["error"] == "invalid_grant"

    second = _authorize(gw, client_id, family["email"])
    assert api(gw, "GET", "/api/v1/auth/me", token=second["access_token"]).status_code == 200
    body = {"current_password": PASSWORD, "new_password": "another long and quiet bedtime password"}
    changed = api(gw, "POST", "/api/v1/auth/password/change", body, family["token"])
    assert changed.status_code == 204, changed.text
    assert _refused_at_the_gateway(gw, second["access_token"])
    assert _refresh(gw, client_id, second["refresh_token"]).json()["error"] == "invalid_grant"
    browser.get(gw.url + "/parent/family")  # the page session ended with the password change
    assert urlsplit(browser.current_url).path == "/parent/sign-in"
