"""Fixtures for the auth service, flaskr style, against a real PostgreSQL database and Redis DB index.

The test database (``storyverse_auth_test``) is created if missing and migrated once per session; tables are
truncated and Redis DB 9 flushed before each test. Services are required: tests fail, never skip, when they are down.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from io import StringIO

import pytest
from auth_support import (
    PASSWORD,
    TABLES,
    TEST_DB_URL,
    TEST_REDIS_URL,
    AuthActions,
    BufferedClient,
    FakeClock,
    ensure_database,
)
from flask_migrate import upgrade
from sqlalchemy import text
from storyverse_auth import create_app
from storyverse_auth.extensions import db
from storyverse_auth.logs import JSONFormatter
from storyverse_auth.models import SigningKey
from storyverse_auth.redis_topology import client_for
from storyverse_auth.tokens import signing
from werkzeug.serving import make_server


@pytest.fixture(scope="session")
def migrated_db() -> str:
    ensure_database(TEST_DB_URL)
    app = create_app({"TESTING": True})
    with app.app_context():
        db.session.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
        db.session.commit()
        upgrade(directory=app.config["MIGRATIONS_DIR"])
        db.engine.dispose()
    return TEST_DB_URL


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def app(migrated_db: str, clock: FakeClock):
    client_for(TEST_REDIS_URL).flushdb()  # standalone, or every primary of a Cluster (TEST_REDIS_URL=redis+cluster://…)
    app = create_app({"TESTING": True, "CLOCK": clock, "TRUST_PROXY_HOPS": 0})
    app.test_client_class = BufferedClient
    with app.app_context():
        db.session.execute(text(f"TRUNCATE {TABLES} CASCADE"))
        db.session.commit()
        signing.clear_cache()
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


def _delete_signing_keys(app) -> None:
    with app.app_context():
        db.session.execute(db.delete(SigningKey))
        db.session.commit()
        signing.clear_cache()


@pytest.fixture
def fresh_signing_keys(app):
    """No signing key before the test, none after it: for tests that change JWT_ALGORITHM or rotate (the keys are
    otherwise kept from test to test, since RSA keys are slow to generate)."""
    _delete_signing_keys(app)
    yield
    _delete_signing_keys(app)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture
def outbox(app):
    return app.extensions["sv_mailer"].outbox


@pytest.fixture
def auth(client) -> AuthActions:
    return AuthActions(client)


@pytest.fixture
def live_server(app) -> Iterator[str]:
    """The app under a real threaded WSGI server, for concurrency tests."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.port}"
    server.shutdown()
    thread.join(timeout=5)


class FamilyActions:
    """Parents, children and child sign-in for the family tests (StoryVerse STYLE 16: helpers for repeated actions)."""

    PIN = "2580"

    def __init__(self, client, auth: AuthActions, clock: FakeClock) -> None:
        self.client, self.auth, self.clock = client, auth, clock

    @property
    def child_birth_year(self) -> int:
        return datetime.fromtimestamp(self.clock(), tz=UTC).year - 8  # band 6-9, rating TV-Y7

    def parent(self, email: str = "parent@example.com") -> dict:
        return self.auth.tokens(email)

    def headers(self, tokens: dict) -> dict:
        return self.auth.bearer(tokens)

    def create_child(self, tokens: dict, username: str = "robin", **extra):
        body = {"display_name": username.title(), "username": username, "birth_year": self.child_birth_year}
        body.setdefault("pin", self.PIN)
        body.update(extra)
        return self.client.post("/api/auth/children", json=body, headers=self.headers(tokens))

    def consent(self, tokens: dict, child_id: str, password: str = PASSWORD):
        body = {"policy_version": "2026-04-22", "agreed": ["profile", "generation"], "password": password}
        return self.client.post(f"/api/auth/children/{child_id}/consent", json=body, headers=self.headers(tokens))

    def family_code(self, tokens: dict) -> str:
        response = self.client.get("/api/auth/family", headers=self.headers(tokens))
        assert response.status_code == 200, response.get_json()
        return response.get_json()["family_code"]

    def child_login(self, family_code: str, username: str = "robin", pin: str = PIN, **kw):
        body = {"family_code": family_code, "username": username, "pin": pin}
        return self.client.post("/api/auth/child/login", json=body, **kw)

    def active_child(self, tokens: dict, username: str = "robin", **extra) -> tuple[dict, dict]:
        """Create, consent and sign in a child: (its profile, its token response)."""
        created = self.create_child(tokens, username, **extra)
        assert created.status_code == 201, created.get_json()
        child = created.get_json()
        assert self.consent(tokens, child["id"]).status_code == 201
        login = self.child_login(self.family_code(tokens), username)
        assert login.status_code == 200, login.get_json()
        return child, login.get_json()


@pytest.fixture
def family(client, auth, clock) -> FamilyActions:
    return FamilyActions(client, auth, clock)


@pytest.fixture
def access_lines(app):
    """The access log lines (``storyverse_auth.access``) written during the test, as dicts."""
    stream = StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JSONFormatter())
    logger = logging.getLogger("storyverse_auth.access")
    logger.addHandler(handler)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    logger.removeHandler(handler)
