"""Refresh rotation (grace, reuse detection, lifetimes), logout scopes, the Redis denylist, session management."""

import threading
import uuid

import jwt
import requests
from auth_support import assert_problem
from storyverse_auth.extensions import db, redis_store
from storyverse_auth.models import Session
from storyverse_auth.redis_keys import session as session_key
from storyverse_contracts.keys import revoked_jti_key, revoked_sid_key


def refresh(client, token: str):
    return client.post("/api/auth/refresh", json={"refresh_token": token})


def test_refresh_rotates(client, auth):
    first = auth.tokens()
    response = refresh(client, first["refresh_token"])
    assert response.status_code == 200
    second = response.get_json()
    assert second["refresh_token"] != first["refresh_token"]
    assert second["session_id"] == first["session_id"]
    assert client.get("/api/auth/me", headers=auth.bearer(second)).status_code == 200


def test_sessions_live_in_redis_without_their_refresh_tokens(app, auth):
    tokens = auth.tokens()
    mac = tokens["refresh_token"].rsplit(".", 1)[1]
    with app.app_context():
        assert db.session.get(Session, uuid.UUID(tokens["session_id"])) is None  # not in PostgreSQL
        stored = redis_store.client.hgetall(session_key(tokens["session_id"]))
    assert stored["gen"] == "0" and stored["account_id"]
    assert not any(mac in value or tokens["refresh_token"] in value for value in stored.values())


def test_grace_window_returns_the_same_successor(client, auth, clock):
    first = auth.tokens()
    a = refresh(client, first["refresh_token"]).get_json()
    clock.advance(20)
    b = refresh(client, first["refresh_token"]).get_json()  # second tab, inside 30 s
    assert a["refresh_token"] == b["refresh_token"]
    assert refresh(client, b["refresh_token"]).status_code == 200


def test_replay_after_grace_revokes_the_session(client, auth, clock):
    first = auth.tokens()
    second = refresh(client, first["refresh_token"]).get_json()
    clock.advance(31)
    assert_problem(refresh(client, first["refresh_token"]), 401, "refresh_token_reused")
    assert_problem(refresh(client, second["refresh_token"]), 401, "invalid_refresh_token")  # the family is dead
    assert_problem(client.get("/api/auth/me", headers=auth.bearer(second)), 401, "token_revoked")


def test_replay_of_an_older_generation_revokes_even_inside_grace(client, auth):
    first = auth.tokens()
    second = refresh(client, first["refresh_token"]).get_json()
    third = refresh(client, second["refresh_token"]).get_json()
    assert_problem(refresh(client, first["refresh_token"]), 401, "refresh_token_reused")
    assert refresh(client, third["refresh_token"]).status_code == 401


def test_forged_and_garbage_refresh_tokens(client, auth):
    tokens = auth.tokens()
    sid_hex = uuid.UUID(tokens["session_id"]).hex
    for bad in ("garbage", f"svrt_{sid_hex}.5.{'0' * 64}", tokens["refresh_token"][:-1] + "x", "svrt_a.b.c"):
        assert_problem(refresh(client, bad), 401, "invalid_refresh_token")
    assert refresh(client, tokens["refresh_token"]).status_code == 200  # forgeries did not hurt the session


def test_idle_and_absolute_lifetimes(app, client, auth, clock):
    idle = auth.tokens()
    clock.advance(app.config["SESSION_IDLE_TTL"] + 1)
    assert_problem(refresh(client, idle["refresh_token"]), 401, "invalid_refresh_token")
    app.config["SESSION_IDLE_TTL"] = 10**9
    absolute = auth.tokens()
    clock.advance(app.config["SESSION_ABSOLUTE_TTL"] + 1)
    assert_problem(refresh(client, absolute["refresh_token"]), 401, "invalid_refresh_token")


def test_logout_local_denylists_the_access_token(app, client, auth):
    tokens = auth.tokens()
    response = client.post("/api/auth/logout", json={}, headers=auth.bearer(tokens))
    assert response.status_code == 204
    jti = jwt.decode(tokens["access_token"], options={"verify_signature": False})["jti"]
    with app.app_context():
        ttl = redis_store.client.ttl(revoked_jti_key(jti, tokens["session_id"]))
        assert 0 < ttl <= 601
        assert redis_store.client.exists(revoked_sid_key(tokens["session_id"]))
    assert_problem(client.get("/api/auth/me", headers=auth.bearer(tokens)), 401, "token_revoked")
    assert_problem(refresh(client, tokens["refresh_token"]), 401, "invalid_refresh_token")


def test_logout_without_body_defaults_to_local(client, auth):
    tokens = auth.tokens()
    assert client.post("/api/auth/logout", headers=auth.bearer(tokens)).status_code == 204


def test_logout_others_and_global(client, auth):
    phone, tablet, laptop = auth.tokens(), auth.tokens(), auth.tokens()
    assert client.post("/api/auth/logout", json={"scope": "others"}, headers=auth.bearer(phone)).status_code == 204
    assert client.get("/api/auth/me", headers=auth.bearer(phone)).status_code == 200
    for other in (tablet, laptop):
        assert client.get("/api/auth/me", headers=auth.bearer(other)).status_code == 401
        assert refresh(client, other["refresh_token"]).status_code == 401
    again = auth.tokens()
    assert client.post("/api/auth/logout", json={"scope": "global"}, headers=auth.bearer(again)).status_code == 204
    for tokens in (phone, again):
        assert client.get("/api/auth/me", headers=auth.bearer(tokens)).status_code == 401


def test_logout_validation_and_auth(client, auth):
    tokens = auth.tokens()
    assert_problem(
        client.post("/api/auth/logout", json={"scope": "everything"}, headers=auth.bearer(tokens)),
        422,
        "validation_failed",
    )
    assert_problem(client.post("/api/auth/logout", json={}), 401, "invalid_token")


def test_sessions_list_and_delete(client, auth):
    first, second = auth.tokens(), auth.tokens()
    listed = client.get("/api/auth/sessions", headers=auth.bearer(first)).get_json()["sessions"]
    assert {s["id"] for s in listed} == {first["session_id"], second["session_id"]}
    assert [s["current"] for s in listed if s["id"] == first["session_id"]] == [True]
    response = client.delete(f"/api/auth/sessions/{second['session_id']}", headers=auth.bearer(first))
    assert response.status_code == 204
    assert refresh(client, second["refresh_token"]).status_code == 401
    assert_problem(
        client.delete(f"/api/auth/sessions/{second['session_id']}", headers=auth.bearer(first)),
        404,
        "session_not_found",
    )
    assert client.get("/api/auth/sessions").status_code == 401


def test_cannot_delete_another_accounts_session(client, auth):
    mine, theirs = auth.tokens("a@example.com"), auth.tokens("b@example.com")
    response = client.delete(f"/api/auth/sessions/{theirs['session_id']}", headers=auth.bearer(mine))
    assert_problem(response, 404, "session_not_found")
    assert refresh(client, theirs["refresh_token"]).status_code == 200


def test_twenty_parallel_refreshes_yield_one_successor(app, auth, live_server):
    tokens = auth.tokens()
    barrier = threading.Barrier(20)
    results: list[tuple[int, dict]] = []
    lock = threading.Lock()

    def worker() -> None:
        barrier.wait()
        response = requests.post(
            f"{live_server}/api/auth/refresh", json={"refresh_token": tokens["refresh_token"]}, timeout=30
        )
        with lock:
            results.append((response.status_code, response.json()))

    threads = [threading.Thread(target=worker) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    statuses = [status for status, _ in results]
    assert len(results) == 20 and all(status < 500 for status in statuses), statuses
    successors = {body["refresh_token"] for status, body in results if status == 200}
    assert len(successors) <= 1
    assert statuses.count(200) >= 1
    with app.app_context():
        assert redis_store.client.hget(session_key(tokens["session_id"]), "gen") == "1"  # one rotation, not revoked
    (successor,) = successors
    ok = requests.post(f"{live_server}/api/auth/refresh", json={"refresh_token": successor}, timeout=30)
    assert ok.status_code == 200
