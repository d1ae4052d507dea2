"""The parent pages (issue 20) through the Flask test client: sign-in (password, TOTP when enrolled), the
page-session cookie's attributes (``__Host-`` + Secure under https), CSRF on every POST, framing headers, the device
page (prefilled code, approve for a consented child of the family only, deny), the family page and its revoke
buttons (another family's child or session is a 404), open-redirect-safe ``next``, and a password change ending the
page session. The same pages in headless Chromium through the gateway: tests/e2e/test_parent_pages_chromium.py."""

from __future__ import annotations

import html
import re
import uuid

import pyotp
import pytest
from auth_support import PASSWORD

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def _csrf(page) -> str:
    return html.unescape(CSRF.search(page.get_data(as_text=True)).group(1))


class Pages:
    def __init__(self, client, family) -> None:
        self.client, self.family = client, family

    def sign_in(self, email: str = "parent@example.com", password: str = PASSWORD, next_: str = "", **extra):
        page = self.client.get("/parent/sign-in" + (f"?next={next_}" if next_ else ""))
        assert page.status_code == 200
        form = {"csrf_token": _csrf(page), "email": email, "password": password, "next": next_, **extra}
        return self.client.post("/parent/sign-in", data=form)

    def csrf(self, path: str = "/parent/family") -> str:
        page = self.client.get(path)
        assert page.status_code == 200, page.status_code
        return _csrf(page)


@pytest.fixture
def pages(app, family):
    app.config["EMAIL_VERIFICATION_REQUIRED"] = False
    return Pages(app.test_client(), family)


def _cookie(response, name: str) -> str:
    return next(h for h in response.headers.getlist("Set-Cookie") if h.startswith(name + "="))


def test_sign_in_sets_an_httponly_lax_session_cookie_and_goes_to_next(pages, family):
    family.parent()
    signed = pages.sign_in(next_="/parent/device?user_code=BCDF-GHJK")
    assert signed.status_code == 303 and signed.headers["Location"] == "/parent/device?user_code=BCDF-GHJK"
    cookie = _cookie(signed, "sv_parent")
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/" in cookie
    assert pages.client.get("/parent/family").status_code == 200


def test_under_https_the_cookies_are_host_prefixed_and_secure(app, pages, family):
    app.config["ISSUER"] = "https://api.storyverse.example"
    family.parent()
    page = pages.client.get("/parent/sign-in")
    assert "__Host-sv_parent_csrf=" in page.headers["Set-Cookie"] and "Secure" in page.headers["Set-Cookie"]
    form = {"csrf_token": _csrf(page), "email": "parent@example.com", "password": PASSWORD}
    signed = pages.client.post("/parent/sign-in", data=form)
    assert signed.status_code == 303
    cookie = _cookie(signed, "__Host-sv_parent")
    assert "Secure" in cookie and "HttpOnly" in cookie and "Path=/" in cookie and "Domain" not in cookie


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/parent/", "/parent/\\evil", "/api/x"])
def test_next_never_leaves_the_parent_pages(pages, family, target):
    family.parent()
    assert pages.sign_in(next_=target).headers["Location"] == "/parent/family"


def test_wrong_password_and_missing_csrf_are_refused(pages, family):
    family.parent()
    wrong = pages.sign_in(password="not the password at all")
    assert wrong.status_code == 401 and "incorrect" in wrong.get_data(as_text=True)
    no_token = pages.client.post("/parent/sign-in", data={"email": "parent@example.com", "password": PASSWORD})
    assert no_token.status_code == 403
    assert pages.client.get("/parent/family").status_code == 303  # still signed out


def test_sign_in_asks_for_the_authenticator_code_when_enrolled(pages, family, client, auth, clock):
    tokens = family.parent()
    begun = client.post("/api/auth/mfa/totp", json={"password": PASSWORD}, headers=auth.bearer(tokens)).get_json()
    totp = pyotp.TOTP(begun["secret"])
    confirm = {"code": totp.at(int(clock()))}
    assert client.post("/api/auth/mfa/totp/confirm", json=confirm, headers=auth.bearer(tokens)).status_code == 200
    asked = pages.sign_in()
    assert asked.status_code == 401 and 'id="code"' in asked.get_data(as_text=True)
    assert pages.client.get("/parent/family").status_code == 303
    assert pages.sign_in(code="000000").status_code == 401
    clock.advance(30)
    assert pages.sign_in(code=totp.at(int(clock()))).status_code == 303
    assert pages.client.get("/parent/family").status_code == 200


@pytest.mark.parametrize("path", ["/parent/sign-in", "/parent/device", "/parent/family"])
def test_pages_refuse_framing_and_caching(pages, family, path):
    family.parent()
    if path != "/parent/sign-in":  # signed in, the sign-in page sends on to the family page
        pages.sign_in()
    page = pages.client.get(path)
    assert page.status_code == 200
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    assert page.headers["X-Frame-Options"] == "DENY" and page.headers["Cache-Control"] == "no-store"


def _device(client) -> dict:
    return client.post("/api/auth/device/code", json={"client_name": "TV"}).get_json()


def test_device_page_prefills_approves_and_denies(app, pages, family, clock):
    parent = family.parent()
    child, _ = family.active_child(parent)
    pages.sign_in()
    grant = _device(pages.client)
    page = pages.client.get(f"/parent/device?user_code={grant['user_code']}")
    assert f'value="{grant["user_code"]}"' in page.get_data(as_text=True)
    form = {"csrf_token": _csrf(page), "user_code": grant["user_code"], "child_id": child["id"], "action": "approve"}
    assert pages.client.post("/parent/device", data={**form, "csrf_token": ""}).status_code == 403
    done = pages.client.post("/parent/device", data=form)
    assert done.status_code == 200 and "Robin" in done.get_data(as_text=True)
    polled = pages.client.post("/api/auth/device/token", json={"device_code": grant["device_code"]})
    assert polled.status_code == 200 and "access_token" in polled.get_json()
    other = _device(pages.client)
    denied = pages.client.post("/parent/device", data={**form, "user_code": other["user_code"], "action": "deny"})
    assert denied.status_code == 200 and "not allowed" in denied.get_data(as_text=True)
    refused = pages.client.post("/api/auth/device/token", json={"device_code": other["device_code"]})
    assert refused.get_json()["code"] == "access_denied"


def test_another_familys_child_and_sessions_are_404s(pages, family, auth):
    mine = family.parent()
    family.active_child(mine, "robin")
    theirs = auth.tokens("other@example.com")
    their_child, their_login = family.active_child(theirs, "zoe")
    pages.sign_in()
    token = pages.csrf()
    grant = _device(pages.client)
    approve = {"csrf_token": token, "user_code": grant["user_code"], "child_id": their_child["id"], "action": "approve"}
    assert pages.client.post("/parent/device", data=approve).status_code == 404
    sid = their_login["session_id"] if "session_id" in their_login else str(uuid.uuid4())
    revoke = {"csrf_token": token, "child_id": their_child["id"], "session_id": sid}
    assert pages.client.post("/parent/family/sessions/revoke", data=revoke).status_code == 404
    headers = auth.bearer(their_login)
    assert pages.client.get("/api/auth/me", headers=headers).status_code == 200  # untouched
    assert "zoe" not in pages.client.get("/parent/family").get_data(as_text=True)


def test_family_page_revokes_a_childs_session(pages, family, auth):
    parent = family.parent()
    child, login = family.active_child(parent)
    pages.sign_in()
    page = pages.client.get("/parent/family").get_data(as_text=True)
    sids = re.findall(r'name="session_id" value="([^"]+)"', page)
    assert len(sids) == 1 and "Robin" in page
    form = {"csrf_token": _csrf(pages.client.get("/parent/family")), "child_id": child["id"], "session_id": sids[0]}
    done = pages.client.post("/parent/family/sessions/revoke", data=form)
    assert done.status_code == 303 and done.headers["Location"] == "/parent/family?done=session"
    assert pages.client.get("/api/auth/me", headers=auth.bearer(login)).status_code == 401
    assert pages.client.post("/parent/family/sessions/revoke", data=form).status_code == 404  # already gone


def test_a_password_change_ends_the_page_session(pages, family, auth):
    tokens = family.parent()
    pages.sign_in()
    assert pages.client.get("/parent/family").status_code == 200
    body = {"current_password": PASSWORD, "new_password": "a brand new bedtime passphrase"}
    assert pages.client.post("/api/auth/password/change", json=body, headers=auth.bearer(tokens)).status_code == 204
    assert pages.client.get("/parent/family").status_code == 303


def test_sign_out_needs_the_token_and_ends_the_session(pages, family):
    family.parent()
    pages.sign_in()
    token = pages.csrf()
    assert pages.client.post("/parent/sign-out", data={}).status_code == 403
    out = pages.client.post("/parent/sign-out", data={"csrf_token": token})
    assert out.status_code == 303 and out.headers["Location"] == "/parent/sign-in"
    assert pages.client.get("/parent/family").status_code == 303
