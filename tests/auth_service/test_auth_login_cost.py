"""What /login costs besides argon2 (docs/architecture.md §13), counted on one Redis server: two Redis round trips (the
throttle check; the throttle clear, session and index in one pipeline), one SQL statement outside a transaction and
no commit before the answer, then the audit row in one more statement with ``synchronous_commit`` off. Also the
guarantees that layout relies on: the index is written before the session, a server that lost its scripts still
signs in, and a rehash never overwrites a newer password."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field

import jwt
import pytest
from auth_support import assert_problem
from redis.connection import AbstractConnection
from sqlalchemy import event, select
from storyverse_auth import audit
from storyverse_auth import redis_keys as keys
from storyverse_auth.auth import accounts
from storyverse_auth.extensions import db, redis_store
from storyverse_auth.models import Account


@dataclass
class Trips:
    redis: int = 0
    sql: list[str] = field(default_factory=list)
    commits: int = 0


@contextmanager
def counted(app, monkeypatch):
    """Redis round trips (one write of packed commands each: a command, or a whole pipeline), SQL statements and
    commits, for the requests made inside the block."""
    trips = Trips()
    send = AbstractConnection.send_packed_command

    def counting_send(self, command, check_health=True):
        trips.redis += 1
        return send(self, command, check_health)

    def statement(conn, cursor, sql, *args):
        trips.sql.append(sql)

    def commit(conn):
        trips.commits += 1

    with app.app_context():
        engine = db.engine
    monkeypatch.setattr(AbstractConnection, "send_packed_command", counting_send)
    event.listen(engine, "before_cursor_execute", statement)
    event.listen(engine, "commit", commit)
    try:
        yield trips
    finally:
        event.remove(engine, "before_cursor_execute", statement)
        event.remove(engine, "commit", commit)


@pytest.fixture
def signed_up(auth):
    auth.register()
    assert auth.login().status_code == 200  # warm: the signing key cached, the scripts loaded, connections open


def test_a_login_is_two_redis_round_trips_one_statement_and_no_commit(app, auth, signed_up, monkeypatch):
    with counted(app, monkeypatch) as trips:
        response = auth.login()
    assert response.status_code == 200
    assert trips.redis == 2
    assert trips.commits == 0
    sign_in, audit_row = trips.sql
    assert "FROM accounts, families" in sign_in and "accounts.email = " in sign_in
    assert audit_row.startswith(audit.ASYNC_COMMIT + "INSERT INTO session_events")


def test_a_parents_children_claim_comes_with_the_sign_in_statement(app, auth, family, monkeypatch):
    parent = family.parent()
    child, _ = family.active_child(parent)
    with counted(app, monkeypatch) as trips:
        response = auth.login()
    claims = jwt.decode(response.get_json()["access_token"], options={"verify_signature": False})
    assert claims["children"] == [child["id"]]
    assert len(trips.sql) == 2 and trips.commits == 0


def test_the_login_creates_indexes_and_clears_the_throttle_counter(app, auth, signed_up):
    assert auth.login(password="a wrong password, long enough").status_code == 401
    counter = keys.throttle_account_ip("parent@example.com", "127.0.0.1")
    with app.app_context():
        assert redis_store.client.exists(counter)
    tokens = auth.login().get_json()
    with app.app_context():
        client = redis_store.client
        assert not client.exists(counter)
        assert client.hget(keys.session(tokens["session_id"]), "gen") == "0"
        account_id = jwt.decode(tokens["access_token"], options={"verify_signature": False})["sub"]
        assert client.zscore(keys.account_sessions(account_id), tokens["session_id"]) is not None


def test_a_server_that_lost_its_scripts_still_signs_in(app, client, auth, signed_up):
    with app.app_context():
        redis_store.client.script_flush()
    tokens = auth.login().get_json()
    listed = client.get("/api/auth/sessions", headers=auth.bearer(tokens)).get_json()
    assert tokens["session_id"] in {s["id"] for s in listed["sessions"]}


def test_no_session_is_created_when_its_index_cannot_be_written(app, auth, signed_up):
    with app.app_context():
        account_id = db.session.scalar(select(Account.id))
        redis_store.client.set(keys.account_sessions(str(account_id)), "not a sorted set")
        before = set(redis_store.client.scan_iter(keys.SESSION_PREFIX + "*"))
    assert_problem(auth.login(), 503, "unavailable")
    with app.app_context():
        assert set(redis_store.client.scan_iter(keys.SESSION_PREFIX + "*")) == before


def test_a_rehash_never_overwrites_a_password_changed_meanwhile(app, auth, signed_up):
    with app.app_context():
        account_id, current = db.session.execute(select(Account.id, Account.password_hash)).one()
        accounts._rehash(account_id, "$argon2id$an-older-hash", "$argon2id$the-rehash")
        assert db.session.scalar(select(Account.password_hash)) == current
