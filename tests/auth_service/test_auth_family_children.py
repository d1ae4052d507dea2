"""Child profiles: create, read, change, delete, PIN, consent; the family view and co-parent invitations."""

import re
import uuid

import pytest
from auth_support import PASSWORD, assert_problem
from storyverse_auth.extensions import db, redis_store
from storyverse_auth.models import Account, Consent, Session
from storyverse_auth.redis_keys import account_sessions
from storyverse_auth.redis_keys import session as session_key


def test_get_family_shows_code_parents_and_children(client, family):
    tokens = family.parent()
    family.create_child(tokens)
    body = client.get("/api/auth/family", headers=family.headers(tokens)).get_json()
    assert re.fullmatch(r"[0-9A-HJKMNP-TV-Z]{10}", body["family_code"])
    assert [p["email"] for p in body["parents"]] == ["parent@example.com"]
    assert [(c["username"], c["active"]) for c in body["children"]] == [("robin", False)]
    assert (body["tier"], body["time_zone"]) == ("basic", "Europe/Paris")


def test_create_child_defaults_and_no_email(app, client, family):
    tokens = family.parent()
    response = family.create_child(tokens, "Robin")
    assert response.status_code == 201
    child = response.get_json()
    assert child["username"] == "robin"  # usernames are case-insensitive
    assert (child["age_band"], child["content_rating"], child["active"], child["has_pin"]) == (
        "6-9",
        "TV-Y7",
        False,
        True,
    )
    assert child["controls"] == {
        "max_content_rating": "TV-Y7",
        "daily_story_limit": 5,
        "allowed_hours": "07:00-20:00",
        "features": ["text"],
    }
    assert child["consent"] is None
    with app.app_context():
        row = db.session.get(Account, uuid.UUID(child["id"]))
        assert row.email is None and row.password_hash is None and row.role == "child"
        assert row.pin_hash.startswith("$argon2id$")


def test_create_child_with_controls(client, family):
    tokens = family.parent()
    controls = {"max_content_rating": "TV-Y", "daily_story_limit": 3, "allowed_hours": "19:00-07:30"}
    child = family.create_child(tokens, controls={**controls, "features": ["audio", "text"]}).get_json()
    assert child["controls"] == {**controls, "features": ["text", "audio"]}
    assert child["content_rating"] == "TV-Y"


def test_list_and_get_children(client, family):
    tokens = family.parent()
    first = family.create_child(tokens, "robin").get_json()
    second = family.create_child(tokens, "sam").get_json()
    listed = client.get("/api/auth/children", headers=family.headers(tokens)).get_json()["children"]
    assert {c["id"] for c in listed} == {first["id"], second["id"]}
    got = client.get(f"/api/auth/children/{second['id']}", headers=family.headers(tokens)).get_json()
    assert got["username"] == "sam"


def test_username_unique_within_family_only(client, family):
    a = family.parent("a@example.com")
    b = family.parent("b@example.com")
    assert family.create_child(a, "robin").status_code == 201
    assert_problem(family.create_child(a, "ROBIN"), 409, "username_taken")
    assert family.create_child(b, "robin").status_code == 201
    sam = family.create_child(a, "sam").get_json()
    patch = client.patch(f"/api/auth/children/{sam['id']}", json={"username": "robin"}, headers=family.headers(a))
    assert_problem(patch, 409, "username_taken")


@pytest.mark.parametrize(
    ("extra", "status", "code"),
    [
        ({"birth_year": 1995}, 422, "invalid_birth_year"),
        ({"birth_year": 2099}, 422, "invalid_birth_year"),
        ({"controls": {"daily_story_limit": 6}}, 422, "daily_limit_above_tier"),
        ({"controls": {"allowed_hours": "07:00-07:00"}}, 422, "validation_failed"),
        ({"controls": {"allowed_hours": "25:00-07:00"}}, 422, "validation_failed"),
        ({"controls": {"features": ["video"]}}, 422, "validation_failed"),
        ({"controls": {"max_content_rating": "TV-MA"}}, 422, "validation_failed"),
        ({"pin": "12a4"}, 422, "validation_failed"),
        ({"pin": "123"}, 422, "validation_failed"),
        ({"pin": "1234"}, 422, "weak_pin"),
        ({"pin": "0000"}, 422, "weak_pin"),
        ({"email": "kid@example.com"}, 422, "validation_failed"),
        ({"username": "-bad"}, 422, "validation_failed"),
    ],
)
def test_create_child_rejects_bad_input(family, extra, status, code):
    tokens = family.parent()
    assert_problem(family.create_child(tokens, **extra), status, code)


def test_premium_tier_allows_twenty(app, family):
    tokens = family.parent()
    with app.app_context():
        parent = db.session.scalar(db.select(Account).where(Account.email == "parent@example.com"))
        parent.family.tier = "premium"
        db.session.commit()
    child = family.create_child(tokens, controls={"daily_story_limit": 20}).get_json()
    assert child["controls"]["daily_story_limit"] == 20
    assert_problem(family.create_child(tokens, "sam", controls={"daily_story_limit": 21}), 422, "validation_failed")


def test_child_limit(app, family, monkeypatch):
    from storyverse_auth.children import service as children

    monkeypatch.setattr(children, "MAX_CHILDREN", 2)
    tokens = family.parent()
    assert family.create_child(tokens, "a1").status_code == 201
    assert family.create_child(tokens, "a2").status_code == 201
    assert_problem(family.create_child(tokens, "a3"), 409, "child_limit_reached")


def test_patch_child_profile(client, family):
    tokens = family.parent()
    child = family.create_child(tokens).get_json()
    body = {"display_name": "Robin Hood", "username": "hood", "controls": {"features": ["text", "image"]}}
    response = client.patch(f"/api/auth/children/{child['id']}", json=body, headers=family.headers(tokens))
    assert response.status_code == 200
    out = response.get_json()
    assert (out["display_name"], out["username"], out["controls"]["features"]) == (
        "Robin Hood",
        "hood",
        ["text", "image"],
    )


def test_birth_year_change_needs_the_parent_password(client, family):
    tokens = family.parent()
    child = family.create_child(tokens).get_json()
    url, headers = f"/api/auth/children/{child['id']}", family.headers(tokens)
    year = family.child_birth_year - 5  # 13: band 10-12 (the birthday may be ahead)
    assert_problem(client.patch(url, json={"birth_year": year}, headers=headers), 422, "validation_failed")
    wrong = {"birth_year": year, "current_password": "not the password at all"}
    assert_problem(client.patch(url, json=wrong, headers=headers), 401, "invalid_credentials")
    ok = client.patch(url, json={"birth_year": year, "current_password": PASSWORD}, headers=headers)
    assert ok.status_code == 200
    assert (ok.get_json()["age_band"], ok.get_json()["birth_year"]) == ("10-12", year)
    # The parent's cap (TV-Y7, the default for the old band) still applies: the effective rating stays the strictest.
    assert ok.get_json()["content_rating"] == "TV-Y7"


def test_consent_records_the_ledger_and_activates(app, client, family):
    tokens = family.parent()
    child = family.create_child(tokens).get_json()
    assert_problem(family.consent(tokens, child["id"], password="not the password at all"), 401, "invalid_credentials")
    response = family.consent(tokens, child["id"])
    assert response.status_code == 201
    out = response.get_json()
    assert out["active"] is True
    assert out["consent"]["policy_version"] == "2026-04-22"
    assert out["consent"]["agreed"] == ["generation", "profile"]
    assert out["consent"]["method"] == "parent_account_reauth"
    with app.app_context():
        ledger = db.session.scalars(db.select(Consent)).all()
        assert len(ledger) == 1 and str(ledger[0].child_id) == child["id"] and ledger[0].giver_id is not None


def test_consent_must_include_profile(client, family):
    tokens = family.parent()
    child = family.create_child(tokens).get_json()
    body = {"policy_version": "v1", "agreed": ["generation"], "password": PASSWORD}
    url = f"/api/auth/children/{child['id']}/consent"
    assert_problem(client.post(url, json=body, headers=family.headers(tokens)), 422, "validation_failed")


def test_set_pin_revokes_child_sessions(client, family):
    tokens = family.parent()
    child, child_tokens = family.active_child(tokens)
    url = f"/api/auth/children/{child['id']}/pin"
    assert_problem(client.put(url, json={"pin": "1111"}, headers=family.headers(tokens)), 422, "weak_pin")
    assert client.put(url, json={"pin": "97531"}, headers=family.headers(tokens)).status_code == 204
    assert_problem(client.get("/api/auth/me", headers=family.headers(child_tokens)), 401, "token_revoked")
    code = family.family_code(tokens)
    assert_problem(family.child_login(code, pin=family.PIN), 401, "invalid_credentials")
    assert family.child_login(code, pin="97531").status_code == 200


def test_child_sessions_list_and_revoke(client, family):
    tokens = family.parent()
    child, child_tokens = family.active_child(tokens)
    url = f"/api/auth/children/{child['id']}/sessions"
    listed = client.get(url, headers=family.headers(tokens)).get_json()["sessions"]
    assert [s["id"] for s in listed] == [child_tokens["session_id"]]
    assert client.delete(url, headers=family.headers(tokens)).status_code == 204
    assert client.get(url, headers=family.headers(tokens)).get_json()["sessions"] == []
    assert_problem(client.get("/api/auth/me", headers=family.headers(child_tokens)), 401, "token_revoked")
    refresh = client.post("/api/auth/refresh", json={"refresh_token": child_tokens["refresh_token"]})
    assert_problem(refresh, 401, "invalid_refresh_token")


def test_delete_child_removes_data_and_revokes(app, client, family):
    tokens = family.parent()
    child, child_tokens = family.active_child(tokens)
    url = f"/api/auth/children/{child['id']}"
    assert client.delete(url, headers=family.headers(tokens)).status_code == 204
    assert_problem(client.get(url, headers=family.headers(tokens)), 404, "child_not_found")
    assert_problem(client.get("/api/auth/me", headers=family.headers(child_tokens)), 401, "token_revoked")
    with app.app_context():
        child_id = uuid.UUID(child["id"])
        assert db.session.get(Account, child_id) is None
        assert db.session.scalars(db.select(Session).where(Session.account_id == child_id)).all() == []
        assert not redis_store.client.exists(session_key(child_tokens["session_id"]), account_sessions(child["id"]))
        assert db.session.scalars(db.select(Consent).where(Consent.child_id == child_id)).all() == []


def test_unknown_and_malformed_child_ids(client, family):
    tokens = family.parent()
    assert_problem(
        client.get(f"/api/auth/children/{uuid.uuid4()}", headers=family.headers(tokens)), 404, "child_not_found"
    )
    assert client.get("/api/auth/children/not-a-uuid", headers=family.headers(tokens)).status_code == 404
