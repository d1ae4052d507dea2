"""Helpers and fixtures for the OAuth provider tests (imported by the test_auth_oauth_* modules; no tests here).

`oauth` (an OAuthKit) registers clients directly through the registry, runs the consent page like a browser would
(GET the form, read its CSRF token, POST it back with the cookie) and exchanges codes at the token endpoint.
"""

from __future__ import annotations

import base64
import hashlib
import html
import re
import secrets
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt
from auth_support import PASSWORD
from sqlalchemy import text
from storyverse_auth.extensions import db
from storyverse_auth.oauth import clients

REDIRECT = "https://app.example.com/callback"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def unverified(token: str) -> tuple[dict, dict]:
    return jwt.get_unverified_header(token), jwt.decode(token, options={"verify_signature": False})


def query(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def oauth_error(response) -> str:
    assert response.headers["Content-Type"].startswith("application/json"), response.get_data(as_text=True)
    return response.get_json()["error"]


class OAuthKit:
    def __init__(self, app, client, auth, family) -> None:
        self.app, self.client, self.auth, self.family = app, client, auth, family

    def register(
        self,
        client_type: str = "public",
        grant_types: tuple[str, ...] = ("authorization_code", "refresh_token"),
        redirect_uris: tuple[str, ...] = (REDIRECT,),
        name: str = "Bedtime Reader",
    ) -> tuple[str, str | None]:
        with self.app.app_context():
            created = clients.create(name, client_type, list(redirect_uris), list(grant_types))
            db.session.commit()
            return created.client.client_id, created.secret

    def params(self, client_id: str, challenge: str | None = None, **extra) -> dict[str, str]:
        base = {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": REDIRECT,
            "scope": "openid profile email",
            "state": secrets.token_urlsafe(8),
            "nonce": secrets.token_urlsafe(8),
        }
        if challenge is not None:
            base.update(code_challenge=challenge, code_challenge_method="S256")
        base.update(extra)
        return {k: v for k, v in base.items() if v is not None}

    def consent_page(self, params: dict[str, str]):
        return self.client.get("/oauth/authorize?" + urlencode(params))

    def submit(self, params: dict[str, str], action: str = "approve", **credentials: str):
        page = self.consent_page(params)
        assert page.status_code == 200, page.get_data(as_text=True)
        token = html.unescape(CSRF.search(page.get_data(as_text=True)).group(1))
        form = {**params, "csrf_token": token, "action": action, **credentials}
        return self.client.post("/oauth/authorize", data=form)

    def approve(self, params: dict[str, str], email: str = "parent@example.com", password: str = PASSWORD) -> str:
        """Consent as the parent; the redirect must carry the code and the state. Returns the code."""
        self.auth.register(email)
        response = self.submit(params, email=email, password=password)
        assert response.status_code == 302, response.get_data(as_text=True)
        got = query(response.headers["Location"])
        assert response.headers["Location"].startswith(params["redirect_uri"] + "?")
        assert got["state"] == params["state"]
        return got["code"]

    def exchange(self, code: str, client_id: str, verifier: str | None, secret: str | None = None, **extra):
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT, **extra}
        if verifier is not None:
            form["code_verifier"] = verifier
        return self.token(form, client_id, secret)

    def token(self, form: dict, client_id: str, secret: str | None = None, basic: bool = True):
        headers = {}
        if secret is not None and basic:
            raw = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
            headers["Authorization"] = f"Basic {raw}"
        elif secret is not None:
            form = {**form, "client_id": client_id, "client_secret": secret}
        else:
            form = {**form, "client_id": client_id}
        return self.client.post("/oauth/token", data=form, headers=headers)

    def tokens(self, client_id: str, secret: str | None = None, scope: str = "openid profile email") -> dict:
        """A full code + PKCE flow; returns the token response."""
        verifier, challenge = pkce()
        code = self.approve(self.params(client_id, challenge, scope=scope))
        response = self.exchange(code, client_id, verifier, secret)
        assert response.status_code == 200, response.get_data(as_text=True)
        return response.get_json()

    def refresh(self, refresh_token: str, client_id: str, secret: str | None = None):
        return self.token({"grant_type": "refresh_token", "refresh_token": refresh_token}, client_id, secret)

    def endpoint(self, path: str, token: str, client_id: str, secret: str | None = None, **extra):
        form = {"token": token, **extra}
        headers = {}
        if secret is not None:
            raw = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
            headers["Authorization"] = f"Basic {raw}"
        else:
            form["client_id"] = client_id
        return self.client.post(path, data=form, headers=headers)

    def make_admin(self, email: str = "admin@example.com") -> dict:
        self.auth.register(email)
        with self.app.app_context():
            db.session.execute(text("UPDATE accounts SET role = 'admin' WHERE email = :e"), {"e": email})
            db.session.commit()
        return self.auth.tokens(email)


def oauth_kit(app, client, auth, family) -> OAuthKit:
    """Build the kit for one test (each test module wraps this in its `oauth` fixture); starts with no clients."""
    with app.app_context():
        db.session.execute(text("TRUNCATE oauth_clients CASCADE"))
        db.session.commit()
    return OAuthKit(app, client, auth, family)
