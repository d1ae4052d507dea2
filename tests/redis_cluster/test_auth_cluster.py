"""The auth service on a real Redis Cluster (3 masters + 3 replicas, tests/redis_cluster/conftest.py), chosen by
``REDIS_URL=redis+cluster://…``: sign-in throttling (a Lua script over two keys in one hash slot), the revocation
denylist (keys in different slots, one pipeline), and a master killed (kill -9) while tokens are checked: answers
are 200 or a 503 problem during the failover, never a 500, and service resumes once the replica is promoted."""

from __future__ import annotations

import time

import jwt
import psycopg2
import pytest
import redis
from flask_migrate import upgrade
from sqlalchemy import text
from storyverse_auth import create_app
from storyverse_auth.extensions import db, redis_store
from storyverse_auth.keys import revoked_sid
from storyverse_auth.redis_topology import RedisCluster

DATABASE = "storyverse_auth_cluster_test"
PASSWORD = "correct horse battery staple twice"


def _fresh_database() -> str:
    conn = psycopg2.connect(host="127.0.0.1", user="postgres", dbname="postgres")
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
        cur.execute(f'CREATE DATABASE "{DATABASE}"')
    conn.close()
    return f"postgresql+psycopg2://postgres@127.0.0.1:5432/{DATABASE}"


@pytest.fixture(scope="module")
def app(cluster):
    url = "redis+cluster://" + ",".join(cluster.nodes)
    app = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": _fresh_database(), "REDIS_URL": url})
    app.config["TRUST_PROXY_HOPS"] = 0
    with app.app_context():
        upgrade(directory=app.config["MIGRATIONS_DIR"])
        db.session.execute(text("SELECT 1"))
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def client(app):
    return app.test_client()


def _tokens(client, email: str) -> dict:
    client.post("/api/auth/register", json={"email": email, "password": PASSWORD, "display_name": "C"})
    response = client.post("/api/auth/login", json={"email": email, "password": PASSWORD})
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def _me(client, tokens: dict):
    return client.get("/api/auth/me", headers={"Authorization": f"Bearer {tokens['access_token']}"})


def test_the_url_selects_a_cluster_client(app):
    with app.app_context():
        assert isinstance(redis_store.client, RedisCluster)


def test_sessions_and_the_denylist_work_on_the_cluster(client):
    first = _tokens(client, "cluster@example.com")
    assert _me(client, first).status_code == 200
    rotated = client.post("/api/auth/refresh", json={"refresh_token": first["refresh_token"]}).get_json()
    bearer = {"Authorization": f"Bearer {rotated['access_token']}"}
    assert client.post("/api/auth/logout", json={}, headers=bearer).status_code == 204
    assert _me(client, rotated).status_code == 401  # sid denylisted: the jti and sid keys sit in different slots
    assert _me(client, first).status_code == 401


def test_sign_in_throttling_runs_its_script_on_the_cluster(app, client):
    _tokens(client, "throttle@example.com")
    statuses = [
        client.post("/api/auth/login", json={"email": "throttle@example.com", "password": "wrong " * 4}).status_code
        for _ in range(app.config["THROTTLE_ACCOUNT_IP_THRESHOLD"] + 2)
    ]
    assert statuses[0] == 401 and statuses[-1] == 429, statuses


def test_a_master_killed_during_token_checks_costs_only_the_failover_window(cluster, client):
    tokens = _tokens(client, "failover@example.com")
    sid = jwt.decode(tokens["access_token"], options={"verify_signature": False})["sid"]
    victim = cluster.master_of(revoked_sid(sid))
    statuses: list[int] = []
    cluster.kill(victim)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        response = _me(client, tokens)
        statuses.append(response.status_code)
        if response.status_code == 503:
            assert response.mimetype == "application/problem+json"
        if statuses[-5:] == [200] * 5 and len(statuses) >= 5:
            break
        time.sleep(0.1)
    assert set(statuses) <= {200, 503}, statuses
    assert statuses[-5:] == [200] * 5, statuses  # the replica took over and the client followed it
    promoted = cluster.master_of(revoked_sid(sid))
    assert promoted != victim
    assert redis.Redis(port=promoted).ping()
