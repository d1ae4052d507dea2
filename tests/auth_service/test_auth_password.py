"""Forgot / reset / change: single-use HMAC'd tokens, 30-minute expiry, sessions revoked, notification mail."""

import re
import threading

from auth_support import PASSWORD, assert_problem
from storyverse_auth.extensions import db
from storyverse_auth.models import PasswordResetToken

NEW_PASSWORD = "a brand new bedtime passphrase"


def _reset_token(client, outbox, email="parent@example.com") -> str:
    assert client.post("/api/auth/password/forgot", json={"email": email}).status_code == 202
    mail = [m for m in outbox if m.subject.startswith("Reset")][-1]
    return re.search(r"token=([A-Za-z0-9_\-]+)", mail.body).group(1)


def _reset(client, token, password=NEW_PASSWORD):
    return client.post("/api/auth/password/reset", json={"token": token, "new_password": password})


def test_reset_flow_revokes_sessions_and_notifies(client, auth, outbox):
    tokens = auth.tokens()
    token = _reset_token(client, outbox)
    assert _reset(client, token).status_code == 204
    assert auth.login(password=PASSWORD).status_code == 401
    assert auth.login(password=NEW_PASSWORD).status_code == 200
    assert client.get("/api/auth/me", headers=auth.bearer(tokens)).status_code == 401
    assert client.post("/api/auth/refresh", json={"refresh_token": tokens["refresh_token"]}).status_code == 401
    assert outbox[-1].subject == "Your StoryVerse password was changed"


def test_reset_token_is_single_use_and_hmaced_at_rest(app, client, auth, outbox):
    auth.register()
    token = _reset_token(client, outbox)
    with app.app_context():
        stored = db.session.scalar(db.select(PasswordResetToken.token_hash))
    assert token not in stored and len(stored) == 64
    assert _reset(client, token).status_code == 204
    assert_problem(_reset(client, token, "yet another long passphrase"), 400, "invalid_reset_token")


def test_reset_token_expires_after_thirty_minutes(client, auth, outbox, clock):
    auth.register()
    token = _reset_token(client, outbox)
    clock.advance(30 * 60 + 1)
    assert_problem(_reset(client, token), 400, "invalid_reset_token")


def test_a_new_reset_consumes_older_tokens(client, auth, outbox):
    auth.register()
    older, newer = _reset_token(client, outbox), _reset_token(client, outbox)
    assert _reset(client, newer).status_code == 204
    assert _reset(client, older, "some other long passphrase").status_code == 400


def test_weak_password_keeps_the_token_usable(client, auth, outbox):
    auth.register()
    token = _reset_token(client, outbox)
    assert_problem(_reset(client, token, "passwordpassword"), 422, "weak_password")
    assert _reset(client, token).status_code == 204


def test_concurrent_resets_consume_once(app, auth, live_server, outbox):
    import requests

    auth.register()
    token = _reset_token(app.test_client(), outbox)
    statuses: list[int] = []
    barrier = threading.Barrier(8)

    def worker(i: int) -> None:
        barrier.wait()
        body = {"token": token, "new_password": f"concurrent passphrase number {i}"}
        statuses.append(requests.post(f"{live_server}/api/auth/password/reset", json=body, timeout=30).status_code)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [204] + [400] * 7


def test_garbage_reset_token(client):
    assert_problem(_reset(client, "not-a-real-token"), 400, "invalid_reset_token")
    assert_problem(_reset(client, "bad token!"), 422, "validation_failed")


def test_change_password(client, auth, outbox):
    tokens, other = auth.tokens(), auth.tokens()
    body = {"current_password": PASSWORD, "new_password": NEW_PASSWORD}
    assert client.post("/api/auth/password/change", json=body, headers=auth.bearer(tokens)).status_code == 204
    for old in (tokens, other):
        assert client.get("/api/auth/me", headers=auth.bearer(old)).status_code == 401
    assert auth.login(password=NEW_PASSWORD).status_code == 200
    assert outbox[-1].subject == "Your StoryVerse password was changed"


def test_change_password_errors(client, auth):
    tokens = auth.tokens()
    wrong = {"current_password": "not my password at all", "new_password": NEW_PASSWORD}
    assert_problem(
        client.post("/api/auth/password/change", json=wrong, headers=auth.bearer(tokens)), 401, "invalid_credentials"
    )
    weak = {"current_password": PASSWORD, "new_password": "qwertyuiopasdfgh"}
    assert_problem(
        client.post("/api/auth/password/change", json=weak, headers=auth.bearer(tokens)), 422, "weak_password"
    )
    assert client.get("/api/auth/me", headers=auth.bearer(tokens)).status_code == 200  # nothing was revoked
    assert client.post("/api/auth/password/change", json=wrong).status_code == 401


def test_forgot_is_throttled_against_mail_bombing(client, auth):
    auth.register()
    for _ in range(5):
        assert client.post("/api/auth/password/forgot", json={"email": "parent@example.com"}).status_code == 202
    response = client.post("/api/auth/password/forgot", json={"email": "parent@example.com"})
    assert_problem(response, 429, "too_many_attempts")
    assert int(response.headers["Retry-After"]) >= 1
