"""Fixtures for the auth service, flaskr style, against a real PostgreSQL database and Redis DB index.

The test database (``storyverse_auth_test``) is created if missing and migrated once per session; tables are
truncated and Redis DB 9 flushed before each test. Services are required: tests fail, never skip, when they are down.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
import redis
from auth_support import TABLES, TEST_DB_URL, TEST_REDIS_URL, AuthActions, FakeClock, ensure_database
from flask_migrate import upgrade
from sqlalchemy import text
from storyverse_auth import create_app, signing
from storyverse_auth.extensions import db
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
    redis.Redis.from_url(TEST_REDIS_URL).flushdb()
    app = create_app({"TESTING": True, "CLOCK": clock, "TRUST_PROXY_HOPS": 0})
    with app.app_context():
        db.session.execute(text(f"TRUNCATE {TABLES} CASCADE"))
        db.session.commit()
        signing.clear_cache()
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


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
