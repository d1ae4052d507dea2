"""The auth service on a real Redis Cluster (3 masters + 3 replicas, tests/redis_cluster/conftest.py), chosen by
``REDIS_URL=redis+cluster://…``: sessions (one hash slot each, rotated by a script), sign-in throttling (a script
over two keys in one slot), the revocation denylist (keys in different slots, one pipeline), the session, family
and OAuth suites run again on the Cluster, and a master killed (kill -9) during refreshes: answers are 200, a 503
problem during the failover or the documented lost-rotation outcome, never a 500, and service resumes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jwt
import pytest
import redis
from flask_migrate import upgrade
from sqlalchemy import text
from storyverse_auth import create_app, revocation
from storyverse_auth.extensions import db, redis_store
from storyverse_auth.redis_keys import account_sessions, throttle_account_ip
from storyverse_auth.redis_keys import session as session_key
from storyverse_auth.redis_topology import RedisCluster
from storyverse_auth.tokens import signing

REPO = Path(__file__).resolve().parents[2]
AUTH_TESTS = REPO / "tests" / "auth_service"
PASSWORD = "correct horse battery staple twice"


@pytest.fixture(scope="module")
def app(cluster, auth_database):
    url = "redis+cluster://" + ",".join(cluster.nodes)
    app = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": auth_database, "REDIS_URL": url})
    app.config["TRUST_PROXY_HOPS"] = 0
    with app.app_context():
        upgrade(directory=app.config["MIGRATIONS_DIR"])
        signing.clear_cache()  # keys cached from another module's database must not sign here
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


def test_a_login_clears_the_throttle_indexes_and_creates_its_session_across_three_slots(app, client):
    """The (account, IP) counter, the account's index and the session live in three slots: the clear and the index
    go first in one pipeline, then the creation script on the session's node (sessions/store.py ``create``), which
    a node that lost its scripts loads again."""
    _tokens(client, "slots@example.com")
    wrong = client.post("/api/auth/login", json={"email": "slots@example.com", "password": "wrong " * 4})
    assert wrong.status_code == 401
    counter = throttle_account_ip("slots@example.com", "127.0.0.1")
    with app.app_context():
        assert redis_store.client.exists(counter)
        redis_store.client.script_flush()
    tokens = _tokens(client, "slots@example.com")
    sid, sub = tokens["session_id"], jwt.decode(tokens["access_token"], options={"verify_signature": False})["sub"]
    with app.app_context():
        cluster = redis_store.client
        assert not cluster.exists(counter)
        assert cluster.zscore(account_sessions(sub), sid) is not None
        assert cluster.hget(session_key(sid), "gen") == "0"


@pytest.mark.timeout(900)  # six suites in a subprocess (its own 900 s limit): 90-130 s here under load
def test_session_family_and_oauth_suites_pass_on_the_cluster(cluster):
    """The auth service's own suites for sessions, families and OAuth, run again with TEST_REDIS_URL on the Cluster."""
    suites = ["test_auth_sessions.py", "test_auth_session_store.py", "test_auth_cross_family.py"]
    suites += ["test_auth_family_children.py", "test_auth_family_signin.py", "test_auth_oauth_flow.py"]
    env = {**os.environ, "TEST_REDIS_URL": "redis+cluster://" + ",".join(cluster.nodes)}
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *(str(AUTH_TESTS / s) for s in suites)]
    run = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=900, cwd=REPO)
    assert run.returncode == 0, run.stdout[-4000:]
    assert " passed" in run.stdout and "failed" not in run.stdout


def test_a_master_killed_during_refreshes_costs_only_the_failover_window(cluster, client):
    """kill -9 of the master holding a session while its refresh chain and token checks go on: every answer is a
    success, a 503 problem during the failover, or (the documented window: a rotation acknowledged by the dead
    master but not yet replicated) a refresh_token_reused that ends the session; afterwards service resumes."""
    tokens = _tokens(client, "failover@example.com")
    sid = tokens["session_id"]
    victim = cluster.master_of(session_key(sid))
    outcomes: list[str] = []
    cluster.kill(victim)
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline and outcomes[-6:] != ["200"] * 6:
        response = client.post("/api/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
        body = response.get_json()
        outcome = str(response.status_code) if response.status_code != 401 else body["code"]
        outcomes.append(outcome)
        if response.status_code == 200:
            tokens = body
            assert _me(client, tokens).status_code in (200, 503)
        elif outcome == "refresh_token_reused":
            tokens = _tokens(client, "failover@example.com")  # the session ended: the user signs in again
        else:
            assert response.status_code == 503 and response.mimetype == "application/problem+json", outcome
            time.sleep(0.1)
    print("failover outcomes:", {o: outcomes.count(o) for o in set(outcomes)})
    assert set(outcomes) <= {"200", "503", "refresh_token_reused"}, outcomes
    assert outcomes[-6:] == ["200"] * 6, outcomes
    assert outcomes.count("refresh_token_reused") <= 1, outcomes
    assert cluster.master_after_failover(session_key(sid), victim) != victim


def _replica_of(master: int) -> int | None:
    info = redis.Redis(port=master, decode_responses=True, socket_timeout=1).info("replication")
    replicas = [v for k, v in info.items() if k.startswith("slave") and isinstance(v, dict)]
    return int(replicas[0]["port"]) if replicas and replicas[0].get("state") == "online" else None


def test_a_revocation_waits_for_the_replica_and_survives_its_master_dying(cluster, client, app):
    """The revoke answers only once the session's replica has the deletion (revocation.confirm: WAIT 1 on the
    session's master), so a kill -9 of that master right after the answer cannot bring the session back. The
    replica is frozen (SIGSTOP) for 0.3 s first: without the wait the answer would come before it had the write."""
    for attempt in range(30):  # a session on a shard that still has its replica (an earlier test killed a master)
        tokens = _tokens(client, f"wait{attempt}@example.com")
        sid = tokens["session_id"]
        master = cluster.master_of(session_key(sid))
        replica = _replica_of(master)
        if replica is not None:
            break
    else:
        pytest.fail("no shard with a live replica")
    revocation.forget_topology()
    os.kill(cluster.procs[replica].pid, signal.SIGSTOP)
    subprocess.Popen(["sh", "-c", f"sleep 0.3; kill -CONT {cluster.procs[replica].pid}"])
    started = time.monotonic()
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert client.delete(f"/api/auth/sessions/{sid}", headers=bearer).status_code == 204
    assert time.monotonic() - started >= 0.2
    cluster.kill(master)
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        response = client.post("/api/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
        if response.status_code != 503:
            break
        time.sleep(0.2)
    assert response.status_code == 401 and response.get_json()["code"] == "invalid_refresh_token", response.get_json()
    assert cluster.master_after_failover(session_key(sid), master) == replica  # the promoted replica answered
    assert _me(client, tokens).status_code == 401
