"""The auth service through Redis Sentinel (``REDIS_URL=redis+sentinel://…/<master>``): a real master and a real
Sentinel (``redis-server --sentinel``) on free ports; sessions, rotation and the denylist go to the master Sentinel
names, and after the master is replaced (a new master, Sentinel told to follow it) the service follows it too."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import redis
from flask_migrate import upgrade
from kong_emulator.testing import free_port
from storyverse_auth import create_app
from storyverse_auth.extensions import db, redis_store
from storyverse_auth.redis_keys import session as session_key
from storyverse_auth.tokens import signing

PASSWORD = "correct horse battery staple twice"
MASTER = "svauth"


class LocalSentinel:
    """Two redis-servers (a master and a spare) and one Sentinel watching the master, in a temp dir."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="sv-redis-sentinel-"))
        self.master, self.spare, self.sentinel = free_port(), free_port(), free_port()
        self.procs: list[subprocess.Popen] = []

    def start(self) -> None:
        for port in (self.master, self.spare):
            argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
            self.procs.append(subprocess.Popen([*argv, "--dir", str(self.dir)], stdout=subprocess.DEVNULL))
        conf = self.dir / "sentinel.conf"
        conf.write_text(
            f"port {self.sentinel}\nbind 127.0.0.1\ndir {self.dir}\n"
            f"sentinel monitor {MASTER} 127.0.0.1 {self.master} 1\n"
            # Long: on a loaded machine a slow PING must not mark the master down (redis-py then refuses it); this
            # test replaces the master by hand and never relies on Sentinel's own failover.
            f"sentinel down-after-milliseconds {MASTER} 60000\n"
        )
        self.procs.append(subprocess.Popen(["redis-server", str(conf), "--sentinel"], stdout=subprocess.DEVNULL))
        deadline = time.monotonic() + 15
        while True:
            try:
                found = redis.Redis(port=self.sentinel).sentinel_get_master_addr_by_name(MASTER)
                if found and int(found[1]) == self.master:
                    return
            except redis.RedisError:
                pass
            assert time.monotonic() < deadline, "sentinel did not start"
            time.sleep(0.1)

    def move_master_to_spare(self) -> None:
        """What a failover ends with: Sentinel names another server (here by hand, with no replica to promote)."""
        sentinel = redis.Redis(port=self.sentinel)
        sentinel.execute_command("SENTINEL", "REMOVE", MASTER)
        sentinel.execute_command("SENTINEL", "MONITOR", MASTER, "127.0.0.1", self.spare, 1)
        sentinel.execute_command("SENTINEL", "SET", MASTER, "down-after-milliseconds", 60000)

    def stop(self) -> None:
        for proc in self.procs:
            proc.kill()
            proc.wait(timeout=5)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def sentinel():
    local = LocalSentinel()
    try:
        local.start()
        yield local
    finally:
        local.stop()


@pytest.fixture(scope="module")
def app(sentinel, auth_database):
    url = f"redis+sentinel://127.0.0.1:{sentinel.sentinel}/{MASTER}/0"
    app = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": auth_database, "REDIS_URL": url})
    app.config["TRUST_PROXY_HOPS"] = 0
    with app.app_context():
        upgrade(directory=app.config["MIGRATIONS_DIR"])
        signing.clear_cache()  # keys cached from another module's database must not sign here
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


def _tokens(client, email: str) -> dict:
    client.post("/api/auth/register", json={"email": email, "password": PASSWORD, "display_name": "S"})
    response = client.post("/api/auth/login", json={"email": email, "password": PASSWORD})
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def test_sessions_live_on_the_master_sentinel_names_and_follow_a_new_one(app, sentinel):
    client = app.test_client()
    tokens = _tokens(client, "sentinel@example.com")
    assert redis.Redis(port=sentinel.master).exists(session_key(tokens["session_id"]))
    rotated = client.post("/api/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert rotated.status_code == 200
    bearer = {"Authorization": f"Bearer {rotated.get_json()['access_token']}"}
    assert client.post("/api/auth/logout", json={}, headers=bearer).status_code == 204
    assert client.get("/api/auth/me", headers=bearer).status_code == 401

    sentinel.move_master_to_spare()
    redis.Redis(port=sentinel.master).execute_command("CLIENT", "KILL", "TYPE", "normal")  # drop pooled connections
    deadline = time.monotonic() + 30
    while True:
        response = client.post("/api/auth/login", json={"email": "sentinel@example.com", "password": PASSWORD})
        if response.status_code == 200:
            break
        assert response.status_code == 503 and time.monotonic() < deadline, response.get_data(as_text=True)
        time.sleep(0.2)
    assert redis.Redis(port=sentinel.spare).exists(session_key(response.get_json()["session_id"]))
    with app.app_context():
        assert redis_store.client.connection_pool.service_name == MASTER
