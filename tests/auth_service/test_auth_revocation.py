"""Revocation keys for a rolling upgrade (both formats while REVOCATION_LEGACY_KEYS is on) and the replica wait
(revocation.confirm: WAIT 1 where the server has a replica), against the real Redis and a real replica process."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid

import jwt
import pytest
import redis
from auth_support import assert_problem
from storyverse_auth import redis_keys as keys
from storyverse_auth import revocation
from storyverse_auth.extensions import redis_store
from storyverse_contracts.keys import (
    legacy_revoked_jti_key,
    legacy_revoked_sid_key,
    revoked_jti_key,
    revoked_sid_key,
)


def claims_of(tokens: dict) -> dict:
    return jwt.decode(tokens["access_token"], options={"verify_signature": False})


def _bearer(tokens: dict) -> dict:
    return {"Authorization": f"Bearer {tokens['access_token']}"}


def _store(app) -> redis.Redis:
    with app.app_context():
        return redis_store.client


def test_a_logout_writes_both_key_formats_with_their_lifetimes(app, client, auth):
    tokens = auth.tokens()
    claims = claims_of(tokens)
    assert client.post("/api/auth/logout", json={}, headers=_bearer(tokens)).status_code == 204
    store = _store(app)
    # What a gateway of the previous release reads, and what this release's gateway reads.
    for name in (legacy_revoked_sid_key(claims["sid"]), revoked_sid_key(claims["sid"])):
        assert 0 < store.ttl(name) <= app.config["ACCESS_TOKEN_TTL"] + 60, name
    for name in (legacy_revoked_jti_key(claims["jti"]), revoked_jti_key(claims["jti"], claims["sid"])):
        assert 0 < store.ttl(name) <= app.config["ACCESS_TOKEN_TTL"] + 1, name


def test_with_legacy_keys_off_only_the_tagged_format_is_written(app, client, auth):
    app.config["REVOCATION_LEGACY_KEYS"] = False
    tokens = auth.tokens()
    claims = claims_of(tokens)
    assert client.post("/api/auth/logout", json={}, headers=_bearer(tokens)).status_code == 204
    store = _store(app)
    assert store.exists(revoked_sid_key(claims["sid"])) and not store.exists(legacy_revoked_sid_key(claims["sid"]))
    assert not store.exists(legacy_revoked_jti_key(claims["jti"]))


@pytest.mark.parametrize("which", ["sid", "jti"])
def test_a_revocation_written_by_an_old_auth_pod_is_honoured(app, client, auth, which):
    tokens = auth.tokens()
    claims = claims_of(tokens)
    assert client.get("/api/auth/me", headers=_bearer(tokens)).status_code == 200
    name = legacy_revoked_sid_key(claims["sid"]) if which == "sid" else legacy_revoked_jti_key(claims["jti"])
    _store(app).set(name, "1", ex=60)  # the old release's writer: no hash tag
    assert_problem(client.get("/api/auth/me", headers=_bearer(tokens)), 401, "token_revoked")


def test_without_a_replica_nothing_waits(app, monkeypatch):
    def never(*args):
        raise AssertionError("WAIT sent to a server without replicas")

    monkeypatch.setattr(revocation, "_wait", never)
    revocation.forget_topology()
    with app.app_context():
        assert revocation.confirm([revoked_sid_key(str(uuid.uuid4()))])


class Replica:
    """A real redis-server replicating the suite's Redis, on a free port; removed at the end."""

    def __init__(self, master_port: int) -> None:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.dir = tempfile.mkdtemp(prefix="sv-auth-replica-")
        argv = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        argv += ["--dir", self.dir, "--replicaof", "127.0.0.1", str(master_port)]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
        self.client = redis.Redis(port=self.port, decode_responses=True, socket_timeout=1)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if self.client.info("replication").get("master_link_status") == "up":
                    return
            except redis.RedisError:
                pass
            time.sleep(0.05)
        raise TimeoutError("replica did not sync")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)
            self.proc.kill()
            self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def replica(app):
    store = _store(app)
    master_port = store.connection_pool.connection_kwargs["port"]
    found = Replica(master_port)
    revocation.forget_topology()
    try:
        yield found
    finally:
        found.stop()
        deadline = time.monotonic() + 10
        while store.info("replication")["connected_slaves"] and time.monotonic() < deadline:
            time.sleep(0.05)
        revocation.forget_topology()


def test_a_revocation_is_answered_once_a_replica_has_it(app, client, auth, replica):
    tokens = auth.tokens()
    sid = tokens["session_id"]
    db_index = _store(app).connection_pool.connection_kwargs.get("db", 0)
    on_replica = redis.Redis(port=replica.port, db=db_index, decode_responses=True)
    assert on_replica.exists(keys.session(sid)) or _eventually(lambda: on_replica.exists(keys.session(sid)))
    os.kill(replica.proc.pid, signal.SIGSTOP)  # the replica falls behind for 0.3 s
    subprocess.Popen(["sh", "-c", f"sleep 0.3; kill -CONT {replica.proc.pid}"])
    started = time.monotonic()
    assert client.delete(f"/api/auth/sessions/{sid}", headers=_bearer(tokens)).status_code == 204
    waited = time.monotonic() - started
    # Answered only after the replica woke and acknowledged: it already has the deletion and the denylist key.
    assert waited >= 0.2, waited
    assert not on_replica.exists(keys.session(sid))
    assert on_replica.exists(revoked_sid_key(sid)) and on_replica.exists(legacy_revoked_sid_key(sid))


def test_a_replica_that_never_answers_bounds_the_wait_and_is_logged(app, client, auth, replica, caplog):
    app.config["REVOCATION_REPLICA_WAIT_MS"] = 200
    tokens = auth.tokens()
    os.kill(replica.proc.pid, signal.SIGSTOP)
    started = time.monotonic()
    response = client.post("/api/auth/logout", json={}, headers=_bearer(tokens))
    waited = time.monotonic() - started
    assert response.status_code == 204  # the revocation stands on the master
    assert 0.2 <= waited < 3, waited
    assert any(getattr(r, "event", "") == "revocation_unreplicated" for r in caplog.records)
    assert_problem(
        client.post("/api/auth/refresh", json={"refresh_token": tokens["refresh_token"]}), 401, "invalid_refresh_token"
    )


def _eventually(probe, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if probe():
            return True
        time.sleep(0.02)
    return False
