"""Helpers shared by the auth-service tests (a uniquely named module: every test directory has a conftest)."""

from __future__ import annotations

import re
import time

import psycopg2
from flask.testing import FlaskClient
from sqlalchemy.engine import make_url
from storyverse_auth.config import TestConfig

PROBLEM_KEYS = {"type", "title", "status", "detail", "instance", "code", "request_id"}
TEST_DB_URL = TestConfig.SQLALCHEMY_DATABASE_URI
TEST_REDIS_URL = TestConfig.REDIS_URL
PASSWORD = "correct horse battery staple twice"
TABLES = "password_reset_tokens, sessions, session_events, accounts, families"


def ensure_database(url: str, drop: bool = False) -> None:
    parsed = make_url(url)
    conn = psycopg2.connect(
        host=parsed.host, port=parsed.port or 5432, user=parsed.username or "postgres", dbname="postgres"
    )
    conn.autocommit = True
    with conn.cursor() as cur:
        if drop:
            cur.execute(f'DROP DATABASE IF EXISTS "{parsed.database}" WITH (FORCE)')
        cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (parsed.database,))
        if cur.fetchone() is None:
            cur.execute(f'CREATE DATABASE "{parsed.database}"')
    conn.close()


class BufferedClient(FlaskClient):
    """Reads and closes every response before returning it, as a WSGI server closes a response once it is sent:
    what the app does on close (the session audit, audit.py) is done when the test looks."""

    def open(self, *args, **kwargs):
        kwargs.setdefault("buffered", True)
        return super().open(*args, **kwargs)


class FakeClock:
    """Injected as ``CLOCK``: starts at real time, moves only when told."""

    def __init__(self) -> None:
        self.t = time.time()

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


def assert_problem(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    body = response.get_json()
    assert PROBLEM_KEYS <= set(body), body
    assert body["status"] == status and body["code"] == code
    assert body["request_id"] == response.headers["X-Request-Id"]
    return body


class AuthActions:
    def __init__(self, client) -> None:
        self._client = client

    def register(self, email: str = "parent@example.com", password: str = PASSWORD, **extra):
        body = {"email": email, "password": password, "display_name": "Pat", "time_zone": "Europe/Paris", **extra}
        return self._client.post("/api/auth/register", json=body)

    def login(self, email: str = "parent@example.com", password: str = PASSWORD, **kw):
        return self._client.post("/api/auth/login", json={"email": email, "password": password}, **kw)

    def verify_email(self, email: str = "parent@example.com") -> None:
        """Open the newest verification link mailed to ``email`` (issue 20: children and consent need it)."""
        outbox = self._client.application.extensions["sv_mailer"].outbox
        links = [m.body for m in outbox if m.to == email and "verify-email?token=" in m.body]
        if links:
            token = re.search(r"verify-email\?token=([A-Za-z0-9_\-]+)", links[-1]).group(1)
            self._client.post("/api/auth/email/verify", json={"token": token})

    def tokens(self, email: str = "parent@example.com") -> dict:
        """Register (if needed), verify the address and log in; return the token response."""
        self.register(email)
        self.verify_email(email)
        response = self.login(email)
        assert response.status_code == 200, response.get_json()
        return response.get_json()

    @staticmethod
    def bearer(tokens: dict) -> dict:
        return {"Authorization": f"Bearer {tokens['access_token']}"}
