"""Fixtures for the rate limiting service, against a real PostgreSQL database laid out as in a deployment (the auth
service's migrations, then the service's init-db) and a real Redis db. Services are required: tests never skip."""

from __future__ import annotations

import psycopg2
import pytest
import redis
from rls_support import AUDIENCE, ISSUER, Signer, recreate_database

DATABASE = "storyverse_rls_test"
REDIS_DB = 13


@pytest.fixture(scope="session")
def database_url() -> str:
    from flask_migrate import upgrade
    from storyverse_auth import create_app as create_auth_app
    from storyverse_auth.extensions import db as auth_db

    url = recreate_database(DATABASE)
    auth = create_auth_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": url})
    with auth.app_context():
        upgrade(directory=auth.config["MIGRATIONS_DIR"])  # families, accounts (and 0003's usage_daily)
        auth_db.engine.dispose()
    return url


@pytest.fixture(scope="session")
def signer() -> Signer:
    return Signer()


@pytest.fixture
def rdb() -> redis.Redis:
    client = redis.Redis(db=REDIS_DB, decode_responses=True)
    client.flushdb()
    return client


@pytest.fixture
def app(database_url, signer, rdb):
    from storyverse_ratelimit import create_app
    from storyverse_ratelimit.extensions import db

    app = create_app(
        {
            "TESTING": True,
            "SQLALCHEMY_DATABASE_URI": database_url,
            "REDIS_URL": f"redis://127.0.0.1:6379/{REDIS_DB}",
            "JWKS": signer.jwks,
            "ISSUER": ISSUER,
            "AUDIENCE": AUDIENCE,
            "USAGE_SYNC_INTERVAL": 0,
        }
    )
    with app.app_context():
        db.session.execute(db.text("TRUNCATE usage_daily, accounts, families CASCADE"))
        db.session.commit()
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def pg(database_url):
    conn = psycopg2.connect(host="127.0.0.1", user="postgres", dbname=DATABASE)
    yield conn
    conn.close()
