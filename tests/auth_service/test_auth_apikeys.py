"""API keys: issued once, hashed at rest, listed without secrets, revoked, and exchanged for a short-lived access
token that carries the key's plan, its tier (the family's for a `family` key), scopes and id (client_id, sid).
Partner plans are an administrator's: issued by one or granted with PUT /api/auth/admin/api-keys/<id>/plan."""

import hashlib
import logging
import uuid

import jwt
import pytest
import redis
from auth_support import TEST_REDIS_URL, assert_problem
from sqlalchemy import select
from storyverse_auth import secrets_box
from storyverse_auth.apikeys.models import ApiKey
from storyverse_auth.extensions import db
from storyverse_auth.models import Account
from storyverse_auth.tokens.access import decode_access_token
from storyverse_contracts.keys import revoked_sid_key

BODY = {"name": "bedtime-app", "scopes": ["stories:read", "stories:generate"]}


def issue(client, family, tokens: dict, **overrides):
    return client.post("/api/auth/api-keys", json={**BODY, **overrides}, headers=family.headers(tokens))


def exchange(client, key: str, **body):
    return client.post("/api/auth/api-keys/token", json=body, headers={"Authorization": f"ApiKey {key}"})


def claims_of(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


@pytest.fixture
def parent(family) -> dict:
    return family.parent()


@pytest.fixture
def admin(app, auth) -> dict:
    auth.register("admin@example.com")
    with app.app_context():
        account = db.session.scalar(select(Account).where(Account.email == "admin@example.com"))
        account.role = "admin"
        db.session.commit()
    return auth.login("admin@example.com").get_json()


def grant(client, family, tokens: dict, key_id: str, plan):
    return client.put(f"/api/auth/admin/api-keys/{key_id}/plan", json={"plan": plan}, headers=family.headers(tokens))


@pytest.fixture
def issued(client, family, parent) -> dict:
    response = issue(client, family, parent)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def test_issue_shows_the_key_once_and_stores_only_its_hmac(app, client, family, parent, issued, caplog):
    key = issued["key"]
    assert key.startswith(issued["prefix"]) and issued["prefix"] == f"svk_{uuid.UUID(issued['id']).hex}_"
    secret = key[len(issued["prefix"]) :]
    assert len(secret) >= 40
    assert (issued["plan"], issued["scopes"]) == ("family", ["stories:read", "stories:generate"])
    with app.app_context():
        row = db.session.scalars(select(ApiKey)).one()
        stored = " ".join(str(v) for v in (row.id, row.name, row.secret_hash, row.scopes, row.plan))
        assert row.secret_hash == secrets_box.token_mac(f"apikey:{row.id.hex}:{secret}")
        assert row.secret_hash != hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in stored and key not in stored
    listed = client.get("/api/auth/api-keys", headers=family.headers(parent)).get_json()["api_keys"]
    assert [k["id"] for k in listed] == [issued["id"]]
    assert "key" not in listed[0] and secret not in str(listed)
    assert exchange(client, key).status_code == 200
    assert secret not in caplog.text and key not in caplog.text


def test_exchange_gives_a_token_metered_under_the_familys_plan(app, client, family, parent, issued):
    response = exchange(client, issued["key"])
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["token_type"] == "Bearer" and 0 < body["expires_in"] <= 600
    assert body["scope"] == "stories:read stories:generate"
    with app.app_context():
        claims = decode_access_token(body["access_token"])  # signed by the service key, verifiable via the JWKS
    assert jwt.get_unverified_header(body["access_token"])["typ"] == "at+jwt"
    parent_claims = claims_of(parent["access_token"])
    assert claims["sub"] == parent_claims["sub"] and claims["family_id"] == parent_claims["family_id"]
    assert (claims["client_id"], claims["sid"]) == (issued["id"], issued["id"])
    assert (claims["tier"], claims["plan"], claims["role"]) == ("basic", "family", "parent")
    assert claims["scope"] == "stories:read stories:generate" and claims["tz"] == "Europe/Paris"
    listed = client.get("/api/auth/api-keys", headers=family.headers(parent)).get_json()["api_keys"]
    assert listed[0]["last_used_at"] is not None


def test_scopes_can_be_narrowed_never_widened(client, family, parent, issued):
    narrowed = exchange(client, issued["key"], scope="stories:read")
    assert narrowed.status_code == 200 and claims_of(narrowed.get_json()["access_token"])["scope"] == "stories:read"
    assert_problem(exchange(client, issued["key"], scope="stories:read usage:read"), 403, "insufficient_scope")
    assert_problem(issue(client, family, parent, scopes=["admin:all"]), 422, "validation_failed")


def test_revoked_key_cannot_be_exchanged_and_its_tokens_are_denied(client, family, parent, issued):
    token = exchange(client, issued["key"]).get_json()["access_token"]
    response = client.delete(f"/api/auth/api-keys/{issued['id']}", headers=family.headers(parent))
    assert response.status_code == 204
    assert_problem(exchange(client, issued["key"]), 401, "invalid_api_key")
    # Outstanding tokens carry sid = key id: the gateway's denylist refuses them at once.
    assert redis.Redis.from_url(TEST_REDIS_URL).exists(revoked_sid_key(issued["id"]))
    assert claims_of(token)["sid"] == issued["id"]
    listed = client.get("/api/auth/api-keys", headers=family.headers(parent)).get_json()["api_keys"]
    assert listed[0]["revoked_at"] is not None
    again = client.delete(f"/api/auth/api-keys/{issued['id']}", headers=family.headers(parent))
    assert_problem(again, 404, "api_key_not_found")


def test_only_the_owner_revokes(client, family, issued):
    other = family.parent("other@example.com")
    assert_problem(
        client.delete(f"/api/auth/api-keys/{issued['id']}", headers=family.headers(other)), 404, "api_key_not_found"
    )
    assert client.get("/api/auth/api-keys", headers=family.headers(other)).get_json()["api_keys"] == []


@pytest.mark.parametrize(
    "presented",
    [
        "svk_",
        "svk_nothex_secret",
        "not-a-key",
        f"svk_{uuid.uuid4().hex}_whatever-secret",
        "svk_" + "0" * 32 + "_" + "x" * 200,
    ],
)
def test_bad_keys_are_refused(client, presented):
    assert_problem(exchange(client, presented), 401, "invalid_api_key")


def test_wrong_secret_and_wrong_scheme_are_refused(client, issued):
    assert_problem(exchange(client, issued["prefix"] + "wrong-secret"), 401, "invalid_api_key")
    response = client.post("/api/auth/api-keys/token", json={}, headers={"Authorization": f"Bearer {issued['key']}"})
    assert response.status_code == 401


def test_children_cannot_hold_keys_and_parents_cannot_pick_admin_plans(client, family, parent):
    _, child_tokens = family.active_child(parent)
    assert_problem(issue(client, family, child_tokens), 403, "key_owner_only")
    for plan in ("partner-basic", "partner-premium", "no-such-plan"):
        assert_problem(issue(client, family, parent, plan=plan), 403, "plan_not_allowed")


def test_a_family_key_follows_the_familys_current_plan(app, client, family, parent, issued):
    with app.app_context():
        account = db.session.scalar(select(Account).where(Account.email == "parent@example.com"))
        account.family.tier = "premium"
        db.session.commit()
    claims = claims_of(exchange(client, issued["key"]).get_json()["access_token"])
    assert (claims["tier"], claims["plan"]) == ("premium", "family")


def test_an_admin_grants_a_partner_plan_that_the_next_exchange_carries(client, family, parent, admin, issued):
    granted = grant(client, family, admin, issued["id"], "partner-premium")
    assert granted.status_code == 200, granted.get_json()
    assert (granted.get_json()["id"], granted.get_json()["plan"]) == (issued["id"], "partner-premium")
    assert "key" not in granted.get_json()
    claims = claims_of(exchange(client, issued["key"]).get_json()["access_token"])
    assert (claims["tier"], claims["plan"]) == ("partner-premium", "partner-premium")
    assert grant(client, family, admin, issued["id"], "family").status_code == 200
    assert claims_of(exchange(client, issued["key"]).get_json()["access_token"])["tier"] == "basic"


def test_admins_issue_partner_keys(client, family, admin):
    created = issue(client, family, admin, plan="partner-basic")
    assert created.status_code == 201 and created.get_json()["plan"] == "partner-basic"


def test_only_an_admin_grants_plans_and_bad_grants_are_problems(client, family, parent, admin, issued):
    assert_problem(grant(client, family, parent, issued["id"], "partner-basic"), 403, "admin_only")
    _, child_tokens = family.active_child(parent)
    assert_problem(grant(client, family, child_tokens, issued["id"], "partner-basic"), 403, "admin_only")
    anonymous = client.put(f"/api/auth/admin/api-keys/{issued['id']}/plan", json={"plan": "partner-basic"})
    assert_problem(anonymous, 401, "invalid_token")
    assert_problem(grant(client, family, admin, str(uuid.uuid4()), "partner-basic"), 404, "api_key_not_found")
    assert_problem(grant(client, family, admin, "not-a-uuid", "partner-basic"), 404, "api_key_not_found")
    assert_problem(grant(client, family, admin, issued["id"], "partner-gold"), 422, "unknown_plan")
    assert_problem(grant(client, family, admin, issued["id"], 7), 422, "validation_failed")
    assert client.delete(f"/api/auth/api-keys/{issued['id']}", headers=family.headers(parent)).status_code == 204
    assert_problem(grant(client, family, admin, issued["id"], "partner-basic"), 404, "api_key_not_found")
    listed = client.get("/api/auth/api-keys", headers=family.headers(parent)).get_json()["api_keys"]
    assert listed[0]["plan"] == "family"


def test_live_keys_are_capped(client, family, parent):
    for i in range(10):
        assert issue(client, family, parent, name=f"k{i}").status_code == 201
    assert_problem(issue(client, family, parent, name="one-too-many"), 409, "api_key_limit")


def test_key_tokens_cannot_manage_accounts(client, family, issued):
    token = exchange(client, issued["key"]).get_json()["access_token"]
    bearer = {"Authorization": f"Bearer {token}"}
    assert_problem(client.post("/api/auth/api-keys", json=BODY, headers=bearer), 403, "api_key_token_not_allowed")
    assert_problem(client.get("/api/auth/me", headers=bearer), 403, "api_key_token_not_allowed")
    assert_problem(client.get("/api/auth/children", headers=bearer), 403, "api_key_token_not_allowed")
    # /api/auth/usage (and its usage:read scope) is the rate limiting service's: tests/rate_limiting_service/


def test_failed_exchanges_are_counted(client, caplog):
    caplog.set_level(logging.INFO)
    exchange(client, "svk_" + "1" * 32 + "_nope")
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'sv_auth_failed_attempts_total{reason="invalid_api_key"} 1.0' in metrics
