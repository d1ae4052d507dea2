"""E-mail verification through the real auth service: single-use, hashed, expiring links gating children and consent;
resend with throttling (issue 20)."""

from __future__ import annotations

import re

from auth_support import PASSWORD, assert_problem
from sqlalchemy import text
from storyverse_auth.extensions import db, redis_store

LINK = re.compile(r"verify-email\?token=([A-Za-z0-9_\-]+)")


def _link(outbox, email: str = "parent@example.com") -> str:
    bodies = [m.body for m in outbox if m.to == email and LINK.search(m.body)]
    return LINK.search(bodies[-1]).group(1)


def _unverified_parent(auth) -> dict:
    assert auth.register().status_code == 202
    response = auth.login()
    assert response.status_code == 200
    return response.get_json()


def _verify(client, token: str):
    return client.post("/api/auth/email/verify", json={"token": token})


def test_an_unverified_parent_cannot_create_children_until_the_link_is_opened(client, auth, family, outbox):
    tokens = _unverified_parent(auth)
    assert outbox[-1].subject == "Welcome to StoryVerse" and LINK.search(outbox[-1].body)
    assert_problem(family.create_child(tokens), 403, "email_unverified")
    assert _verify(client, _link(outbox)).status_code == 204
    assert family.create_child(tokens).status_code == 201


def test_a_link_is_single_use_and_stored_only_as_a_hash(app, client, auth, outbox):
    _unverified_parent(auth)
    token = _link(outbox)
    with app.app_context():
        stored = db.session.execute(text("SELECT token_hash FROM email_verifications")).scalars().all()
    assert len(stored) == 1 and token not in stored[0] and len(stored[0]) == 64
    assert _verify(client, token).status_code == 204
    assert_problem(_verify(client, token), 400, "invalid_verification_token")
    assert_problem(_verify(client, "not-a-real-token"), 400, "invalid_verification_token")


def test_a_link_expires(app, client, auth, family, outbox, clock):
    app.config["EMAIL_VERIFY_TTL"] = 120  # a day by default; shorter than an access token here
    tokens = _unverified_parent(auth)
    clock.advance(121)
    assert_problem(_verify(client, _link(outbox)), 400, "invalid_verification_token")
    assert_problem(family.create_child(tokens), 403, "email_unverified")


def test_resend_is_throttled_and_retires_the_older_link(app, client, auth, outbox, clock):
    tokens = _unverified_parent(auth)
    first = _link(outbox)
    headers = auth.bearer(tokens)
    assert client.post("/api/auth/email/verification", headers=headers).status_code == 202
    second = _link(outbox)
    assert second != first
    throttled = assert_problem(client.post("/api/auth/email/verification", headers=headers), 429, "too_many_attempts")
    assert throttled["status"] == 429
    assert_problem(_verify(client, first), 400, "invalid_verification_token")  # retired by the resend
    for _ in range(4):  # 5 a day in all
        _minute_passes(app)
        assert client.post("/api/auth/email/verification", headers=headers).status_code == 202
    _minute_passes(app)
    response = client.post("/api/auth/email/verification", headers=headers)
    assert_problem(response, 429, "too_many_attempts")
    assert int(response.headers["Retry-After"]) > 60
    assert _verify(client, _link(outbox)).status_code == 204
    assert_problem(client.post("/api/auth/email/verification", headers=headers), 409, "email_already_verified")


def _minute_passes(app) -> None:
    with app.app_context():
        for key in redis_store.client.scan_iter("sv:auth:v1:verify-resend:*:gap"):
            redis_store.client.delete(key)


def test_consent_needs_a_verified_address_too(app, client, auth, family, outbox):
    tokens = family.parent()  # verified
    child = family.create_child(tokens).get_json()
    with app.app_context():
        db.session.execute(text("UPDATE accounts SET email_verified_at = NULL WHERE role = 'parent'"))
        db.session.commit()
    assert_problem(family.consent(tokens, child["id"]), 403, "email_unverified")


def test_a_joined_co_parent_is_verified_by_the_invitation_link(client, family, outbox):
    tokens = family.parent()
    client.post("/api/auth/family/invitations", json={"email": "co@example.com"}, headers=family.headers(tokens))
    token = re.search(r"token=([A-Za-z0-9_\-]+)", outbox[-1].body).group(1)
    joined = client.post(
        "/api/auth/family/join", json={"token": token, "password": PASSWORD, "display_name": "Co"}
    ).get_json()
    assert family.create_child(joined, "sam").status_code == 201


def test_the_gate_can_be_turned_off(app, auth, family):
    app.config["EMAIL_VERIFICATION_REQUIRED"] = False
    assert family.create_child(_unverified_parent(auth)).status_code == 201


def test_children_have_no_address_to_verify(client, family):
    tokens = family.parent()
    _, child = family.active_child(tokens)
    assert_problem(client.post("/api/auth/email/verification", headers=family.headers(child)), 403, "no_email")
