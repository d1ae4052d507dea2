"""Consent withdrawal, data export and parent account deletion through the real auth service (issue 20)."""

from __future__ import annotations

import re

from auth_support import PASSWORD, assert_problem
from sqlalchemy import text
from storyverse_auth.extensions import db
from storyverse_auth.privacy import service

API_KEY = {"name": "bedtime-app", "scopes": ["stories:read"], "plan": "family"}


def test_withdrawing_consent_signs_the_child_out_and_stops_sign_in(client, family):
    tokens = family.parent()
    child, child_tokens = family.active_child(tokens)
    headers = family.headers(tokens)
    assert client.delete(f"/api/auth/children/{child['id']}/consent", headers=headers).status_code == 204
    assert_problem(client.get("/api/auth/me", headers=family.headers(child_tokens)), 401, "token_revoked")
    assert_problem(family.child_login(family.family_code(tokens)), 403, "profile_inactive")
    assert_problem(
        client.post("/api/auth/refresh", json={"refresh_token": child_tokens["refresh_token"]}),
        401,
        "invalid_refresh_token",
    )
    profile = client.get(f"/api/auth/children/{child['id']}", headers=headers).get_json()
    assert profile["active"] is False
    assert_problem(
        client.delete(f"/api/auth/children/{child['id']}/consent", headers=headers), 409, "consent_not_given"
    )
    # consent can be given again
    assert family.consent(tokens, child["id"]).status_code == 201
    assert family.child_login(family.family_code(tokens)).status_code == 200


def test_another_familys_child_is_not_found_and_children_cannot_withdraw(client, family):
    a = family.parent("a@example.com")
    child, child_tokens = family.active_child(a)
    b = family.parent("b@example.com")
    url = f"/api/auth/children/{child['id']}/consent"
    assert_problem(client.delete(url, headers=family.headers(b)), 404, "child_not_found")
    assert_problem(client.delete(url, headers=family.headers(child_tokens)), 403, "parent_only")


def test_export_is_the_familys_data_without_secrets(app, client, family):
    tokens = family.parent()
    family.active_child(tokens)
    body = client.get("/api/auth/account/export", headers=family.headers(tokens)).get_json()
    assert body["account"]["email"] == "parent@example.com" and body["account"]["email_verified"] is True
    assert body["family"]["plan"] == "basic"
    [kid] = body["family"]["children"]
    assert kid["username"] == "robin" and kid["consents"][0]["policy_version"] == "2026-04-22"
    assert kid["sessions"] and body["account"]["sessions"]
    text_body = str(body)
    for secret in ("password_hash", "pin_hash", "refresh_token", "argon2"):
        assert secret not in text_body


def test_deletion_revokes_everything_now_and_purges_after_the_grace_period(app, client, family, clock):
    tokens = family.parent()
    _, child_tokens = family.active_child(tokens)
    headers = family.headers(tokens)
    key = client.post("/api/auth/api-keys", json=API_KEY, headers=headers).get_json()
    assert_problem(
        client.post("/api/auth/account/deletion", json={"password": "not it at all"}, headers=headers),
        401,
        "invalid_credentials",
    )
    asked = client.post("/api/auth/account/deletion", json={"password": PASSWORD}, headers=headers)
    assert asked.status_code == 202 and asked.get_json()["family_deleted"] is True
    assert_problem(client.get("/api/auth/me", headers=headers), 401, "token_revoked")
    assert_problem(client.get("/api/auth/me", headers=family.headers(child_tokens)), 401, "token_revoked")
    with app.app_context():
        revoked = db.session.execute(text("SELECT revoked_at FROM api_keys WHERE id = :i"), {"i": key["id"]}).scalar()
    assert revoked is not None
    with app.app_context():
        assert service.purge_due() == 0  # still inside the grace period
        db.session.commit()
    clock.advance(7 * 24 * 3600 + 1)
    with app.app_context():
        assert service.purge_due() == 1
        db.session.commit()
        left = db.session.execute(text("SELECT count(*) FROM accounts")).scalar()
        families_left = db.session.execute(text("SELECT count(*) FROM families")).scalar()
    assert left == 0 and families_left == 0


def test_signing_in_inside_the_grace_period_can_cancel(app, client, auth, family, clock):
    tokens = family.parent()
    client.post("/api/auth/account/deletion", json={"password": PASSWORD}, headers=family.headers(tokens))
    again = auth.login().get_json()
    assert client.delete("/api/auth/account/deletion", headers=auth.bearer(again)).status_code == 204
    assert_problem(client.delete("/api/auth/account/deletion", headers=auth.bearer(again)), 404, "no_deletion_pending")
    clock.advance(8 * 24 * 3600)
    with app.app_context():
        assert service.purge_due() == 0


def test_with_a_co_parent_only_the_leaving_parents_account_goes(app, client, family, outbox, clock, runner):
    tokens = family.parent()
    child, _ = family.active_child(tokens)
    client.post("/api/auth/family/invitations", json={"email": "co@example.com"}, headers=family.headers(tokens))
    token = re.search(r"token=([A-Za-z0-9_\-]+)", outbox[-1].body).group(1)
    co = client.post(
        "/api/auth/family/join", json={"token": token, "password": PASSWORD, "display_name": "Co"}
    ).get_json()
    asked = client.post("/api/auth/account/deletion", json={"password": PASSWORD}, headers=family.headers(tokens))
    assert asked.get_json()["family_deleted"] is False
    clock.advance(7 * 24 * 3600 + 1)
    result = runner.invoke(args=["privacy", "purge"])
    assert "purged 1 account(s)" in result.output
    # the co-parent and the child stay; the leaving parent is gone
    with app.app_context():
        rows = db.session.execute(text("SELECT email, role FROM accounts ORDER BY role")).all()
    assert [tuple(r) for r in rows] == [(None, "child"), ("co@example.com", "parent")]
    assert co["access_token"] and child["id"]
