"""Sessions in Redis (issue 17): the audit trail in PostgreSQL, the move of PostgreSQL sessions (on first use and in
bulk), and the failure analysis of docs/architecture.md made concrete: a rotation lost by a Redis failover makes the
next refresh look like a reuse, which ends the session (safe: the user signs in again)."""

import uuid
from datetime import timedelta

import jwt
from auth_support import PASSWORD, assert_problem
from sqlalchemy import select, text
from storyverse_auth import audit, secrets_box
from storyverse_auth.clock import now
from storyverse_auth.extensions import db, redis_store
from storyverse_auth.models import Account, Session, SessionEvent
from storyverse_auth.redis_keys import account_sessions
from storyverse_auth.redis_keys import session as session_key
from storyverse_auth.sessions.service import MOVED, refresh_token_for
from storyverse_contracts.keys import revoked_sid_key


def refresh(client, token: str):
    return client.post("/api/auth/refresh", json={"refresh_token": token})


def events(app, sid: str) -> list[tuple[str, str | None]]:
    with app.app_context():
        rows = db.session.execute(
            select(SessionEvent.event, SessionEvent.reason)
            .where(SessionEvent.session_id == uuid.UUID(sid))
            .order_by(SessionEvent.id)
        )
        return [tuple(row) for row in rows]


def test_login_logout_reuse_and_revoke_are_audited_in_postgres(app, client, auth, clock):
    phone, tablet = auth.tokens(), auth.tokens()
    rotated = refresh(client, phone["refresh_token"]).get_json()
    clock.advance(31)
    assert_problem(refresh(client, phone["refresh_token"]), 401, "refresh_token_reused")
    assert events(app, phone["session_id"]) == [("login", None), ("revoke", "refresh_reuse")]
    assert client.delete(f"/api/auth/sessions/{tablet['session_id']}", headers=auth.bearer(tablet)).status_code == 204
    assert events(app, tablet["session_id"]) == [("login", None), ("revoke", "revoked_by_user")]
    assert rotated["session_id"] == phone["session_id"]
    third = auth.tokens()
    assert client.post("/api/auth/logout", json={}, headers=auth.bearer(third)).status_code == 204
    assert events(app, third["session_id"]) == [("login", None), ("revoke", "logout")]


def test_the_audit_row_is_written_once_the_answer_has_been_sent(app, client, auth):
    """audit.flush defers the write to the response's close, which a WSGI server calls after sending it."""
    auth.tokens()
    body = {"email": "parent@example.com", "password": PASSWORD}
    response = client.post("/api/auth/login", json=body, buffered=False)
    sid = response.get_json()["session_id"]
    assert events(app, sid) == []
    response.close()
    assert events(app, sid) == [("login", None)]


def test_every_event_of_a_request_is_written(app, client, auth):
    first, second = auth.tokens(), auth.tokens()
    assert client.post("/api/auth/logout", json={"scope": "global"}, headers=auth.bearer(first)).status_code == 204
    assert events(app, first["session_id"]) == [("login", None), ("revoke", "logout")]
    assert events(app, second["session_id"]) == [("login", None), ("revoke", "logout_global")]


def test_the_audit_commit_skips_the_wal_flush_and_only_for_itself(app):
    """audit.write sends ``SET LOCAL`` and its INSERT as one query string on an AUTOCOMMIT connection: PostgreSQL
    runs it as one implicit transaction, so the setting holds for that commit and not for the pooled connection."""
    with app.app_context(), db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        inside = conn.exec_driver_sql(audit.ASYNC_COMMIT + "SELECT current_setting('synchronous_commit')").scalar()
        after = conn.execute(text("SHOW synchronous_commit")).scalar()
    assert (inside, after) == ("off", "on")


def test_routine_refreshes_write_nothing_to_postgres(app, client, auth):
    tokens = auth.tokens()
    for _ in range(3):
        tokens = refresh(client, tokens["refresh_token"]).get_json()
    assert events(app, tokens["session_id"]) == [("login", None)]


def _legacy_session(app, email: str, generation: int = 3, **overrides) -> tuple[uuid.UUID, str]:
    """A session as the PostgreSQL store wrote it before the move (same token format, so old tokens stay valid)."""
    with app.app_context():
        account = db.session.scalar(select(Account).where(Account.email == email))
        ts = now()
        sid = uuid.uuid4()
        token = refresh_token_for(sid, generation)
        row = {
            "id": sid,
            "account_id": account.id,
            "generation": generation,
            "refresh_token_hash": secrets_box.sha256_hex(token),
            "created_at": ts - timedelta(days=1),
            "last_used_at": ts - timedelta(hours=1),
            "expires_at": ts + timedelta(days=30),
            "user_agent": "LegacyApp/1.0",
            "ip": "192.0.2.9",
            **overrides,
        }
        db.session.add(Session(**row))
        db.session.commit()
    return sid, token


def test_a_postgres_session_moves_to_redis_on_its_first_refresh(app, client, auth):
    auth.tokens()
    sid, token = _legacy_session(app, "parent@example.com")
    response = refresh(client, token)
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    with app.app_context():
        assert body["session_id"] == str(sid) and body["refresh_token"] == refresh_token_for(sid, 4)
        assert db.session.get(Session, sid).revoke_reason == MOVED
        assert redis_store.client.hget(session_key(str(sid)), "gen") == "4"
    assert refresh(client, token).status_code == 200  # the grace window still applies to the moved session
    assert refresh(client, body["refresh_token"]).status_code == 200


def test_a_moved_session_revoked_in_redis_never_comes_back_from_postgres(app, client, auth):
    parent = auth.tokens()
    sid, token = _legacy_session(app, "parent@example.com")
    listed = client.get("/api/auth/sessions", headers=auth.bearer(parent)).get_json()["sessions"]
    assert str(sid) in {s["id"] for s in listed}  # listing moves it, with its device
    assert [s["user_agent"] for s in listed if s["id"] == str(sid)] == ["LegacyApp/1.0"]
    assert client.delete(f"/api/auth/sessions/{sid}", headers=auth.bearer(parent)).status_code == 204
    assert_problem(refresh(client, token), 401, "invalid_refresh_token")


def test_revoke_all_reaches_sessions_not_yet_moved(app, client, auth):
    parent = auth.tokens()
    sid, token = _legacy_session(app, "parent@example.com")
    assert client.post("/api/auth/logout", json={"scope": "global"}, headers=auth.bearer(parent)).status_code == 204
    assert_problem(refresh(client, token), 401, "invalid_refresh_token")
    with app.app_context():
        assert redis_store.client.exists(revoked_sid_key(str(sid)))


def test_bulk_move_cli_moves_live_sessions_only(app, client, auth, runner):
    auth.tokens()
    live = [_legacy_session(app, "parent@example.com") for _ in range(3)]
    with app.app_context():
        ts = now()
    revoked, _ = _legacy_session(app, "parent@example.com", revoked_at=ts, revoke_reason="logout")
    expired, _ = _legacy_session(app, "parent@example.com", expires_at=ts - timedelta(seconds=1))
    result = runner.invoke(args=["sessions", "move-to-redis", "--batch", "2"])
    assert result.exit_code == 0 and "moved=3" in result.output, result.output
    assert runner.invoke(args=["sessions", "move-to-redis"]).output.strip() == "moved=0"  # idempotent
    with app.app_context():
        for sid in (revoked, expired):
            assert not redis_store.client.exists(session_key(str(sid)))
    for sid, token in live:
        assert refresh(client, token).get_json()["session_id"] == str(sid)


def test_a_rotation_lost_in_a_failover_ends_the_session_at_the_next_refresh(app, client, auth):
    first = auth.tokens()
    second = refresh(client, first["refresh_token"]).get_json()
    with app.app_context():  # the promoted replica never saw the rotation: generation 0 again
        redis_store.client.hset(session_key(first["session_id"]), "gen", 0)
    assert_problem(refresh(client, second["refresh_token"]), 401, "refresh_token_reused")
    assert_problem(client.get("/api/auth/me", headers=auth.bearer(second)), 401, "token_revoked")
    assert_problem(refresh(client, first["refresh_token"]), 401, "invalid_refresh_token")
    assert auth.login().status_code == 200  # the user signs in again


def test_a_session_lost_in_a_failover_is_an_invalid_token_not_an_error(app, client, auth):
    tokens = auth.tokens()
    with app.app_context():
        redis_store.client.delete(session_key(tokens["session_id"]))
    assert_problem(refresh(client, tokens["refresh_token"]), 401, "invalid_refresh_token")
    sid = jwt.decode(tokens["access_token"], options={"verify_signature": False})["sid"]
    assert sid == tokens["session_id"]


def test_listing_prunes_ended_sessions_from_the_account_index(app, client, auth, clock):
    clock.advance(-app.config["SESSION_IDLE_TTL"] - 1)  # back in time (PyJWT refuses tokens issued in the future)
    old = auth.tokens()
    clock.advance(app.config["SESSION_IDLE_TTL"] + 1)
    current = auth.tokens()
    response = client.get("/api/auth/sessions", headers=auth.bearer(current))
    assert response.status_code == 200, response.get_json()
    assert [s["id"] for s in response.get_json()["sessions"]] == [current["session_id"]]
    with app.app_context():
        account = jwt.decode(current["access_token"], options={"verify_signature": False})["sub"]
        assert redis_store.client.zrange(account_sessions(account), 0, -1) == [current["session_id"]]
    assert_problem(refresh(client, old["refresh_token"]), 401, "invalid_refresh_token")
