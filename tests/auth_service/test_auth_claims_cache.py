"""The token's claims cached in the session hash (services/claims_cache.py): a warm refresh reads no PostgreSQL, and
every change the service makes to a claim is visible at the next refresh of every affected session."""

from __future__ import annotations

import uuid
from contextlib import contextmanager

import jwt
import pytest
import redis
from auth_support import PASSWORD, assert_problem
from sqlalchemy import event, text
from storyverse_auth import redis_keys as keys
from storyverse_auth.extensions import db, redis_store
from storyverse_auth.models import Account
from storyverse_auth.sessions import claims_cache
from storyverse_auth.sessions import store as session_store
from test_auth_billing import SECRET, Billing


@pytest.fixture
def app(app):
    app.config.update(BILLING_WEBHOOK_SECRETS=SECRET, BILLING_WEBHOOK_TOLERANCE=300)
    return app


def claims_of(tokens: dict) -> dict:
    return jwt.decode(tokens["access_token"], options={"verify_signature": False})


class Device:
    """One signed-in device: its refresh chain, refreshed through the real endpoint."""

    def __init__(self, client, tokens: dict) -> None:
        self.client, self.tokens = client, tokens

    def refresh(self):
        response = self.client.post("/api/auth/refresh", json={"refresh_token": self.tokens["refresh_token"]})
        if response.status_code == 200:
            self.tokens = response.get_json()
        return response

    def claims(self) -> dict:
        response = self.refresh()
        assert response.status_code == 200, response.get_json()
        return claims_of(self.tokens)

    @property
    def headers(self) -> dict:
        return {"Authorization": f"Bearer {self.tokens['access_token']}"}

    @property
    def sid(self) -> str:
        return self.tokens["session_id"]


@contextmanager
def statements(app):
    """Every SQL statement the app's engine runs inside the block."""
    seen: list[str] = []

    def record(conn, cursor, statement, *args):
        seen.append(statement)

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def cached(app, sid: str) -> str | None:
    with app.app_context():
        return redis_store.client.hget(keys.session(sid), "claims")


@pytest.fixture
def parent(client, auth) -> Device:
    device = Device(client, auth.tokens())
    device.claims()  # warm: the first refresh after login reads PostgreSQL and caches
    return device


def test_a_warm_refresh_is_one_redis_round_trip_and_no_sql(app, client, parent):
    assert cached(app, parent.sid) is not None
    with statements(app) as seen:
        claims = parent.claims()
    assert seen == []
    assert (claims["role"], claims["tier"], claims["children"], claims["amr"]) == ("parent", "basic", [], ["pwd"])


def test_the_first_refresh_after_login_reads_postgresql_and_fills_the_cache(app, client, auth):
    device = Device(client, auth.tokens())
    assert cached(app, device.sid) is None
    with statements(app) as seen:
        device.claims()
    assert any("FROM accounts" in s for s in seen)
    assert cached(app, device.sid) is not None


def test_tier_upgrade_by_the_billing_webhook_reaches_parent_and_child_sessions(app, client, parent, family, clock):
    _, child_tokens = family.active_child(parent.tokens)
    child = Device(client, child_tokens)
    assert child.claims()["daily_story_limit"] == 5
    family_id = claims_of(parent.tokens)["family_id"]
    assert Billing(client, clock).send(Billing(client, clock).event(family_id)).get_json() == {"status": "applied"}
    assert parent.claims()["tier"] == "premium"
    assert child.claims()["tier"] == "premium"


def test_a_child_added_or_removed_reaches_every_parent_device(app, client, auth, parent, family):
    other = Device(client, auth.login().get_json())  # the same parent on a second device, warmed
    assert other.claims()["children"] == []
    created = family.create_child(parent.tokens, "robin")
    assert created.status_code == 201
    child_id = created.get_json()["id"]
    assert other.claims()["children"] == [child_id]
    deleted = client.delete(f"/api/auth/children/{child_id}", headers=other.headers)
    assert deleted.status_code == 204, deleted.get_json()
    assert other.claims()["children"] == []
    assert parent.claims()["children"] == []


def test_loosened_controls_reach_the_child_and_tightened_ones_end_its_session(app, client, parent, family):
    child_profile, child_tokens = family.active_child(parent.tokens, controls={"features": ["text"]})
    child = Device(client, child_tokens)
    assert child.claims()["features"] == ["text"]
    url = f"/api/auth/children/{child_profile['id']}"
    loosen = client.patch(url, json={"controls": {"features": ["text", "audio"]}}, headers=parent.headers)
    assert loosen.status_code == 200, loosen.get_json()
    assert child.claims()["features"] == ["text", "audio"]
    tighten = client.patch(url, json={"controls": {"daily_story_limit": 1}}, headers=parent.headers)
    assert tighten.status_code == 200
    assert_problem(child.refresh(), 401, "invalid_refresh_token")


def test_consent_withdrawn_ends_the_child_session(client, parent, family):
    child_profile, child_tokens = family.active_child(parent.tokens)
    child = Device(client, child_tokens)
    child.claims()
    url = f"/api/auth/children/{child_profile['id']}/consent"
    assert client.delete(url, headers=parent.headers).status_code == 204
    assert_problem(child.refresh(), 401, "invalid_refresh_token")


def test_password_change_ends_the_other_sessions(client, auth, parent):
    other = Device(client, auth.login().get_json())
    other.claims()
    body = {"current_password": PASSWORD, "new_password": "a brand new passphrase for pat"}
    assert client.post("/api/auth/password/change", json=body, headers=parent.headers).status_code == 204
    assert_problem(other.refresh(), 401, "invalid_refresh_token")


def test_orm_changes_to_role_time_zone_and_birth_year_are_seen(app, client, parent, family, clock):
    child_profile, child_tokens = family.active_child(parent.tokens)
    child = Device(client, child_tokens)
    assert child.claims()["age_band"] == "6-9"
    with app.app_context():
        kid = db.session.get(Account, uuid.UUID(child_profile["id"]))
        kid.birth_year -= 4  # 12 now: band 10-12
        kid.family.time_zone = "America/New_York"
        db.session.commit()
        grown = db.session.scalar(db.select(Account).where(Account.email == "parent@example.com"))
        grown.role = "admin"
        db.session.commit()
    claims = child.claims()
    assert (claims["age_band"], claims["tz"]) == ("10-12", "America/New_York")
    assert (parent.claims()["role"], claims_of(parent.tokens)["tz"]) == ("admin", "America/New_York")


def test_a_refresh_that_read_before_a_change_cannot_cache_what_it_read(app, parent, clock):
    with app.app_context():
        sid = uuid.UUID(parent.sid)
        gen = int(parent.tokens["refresh_token"].split(".")[1])
        rotated = session_store.rotate(sid, gen, clock(), 10**6, 30, 10**6)
        assert rotated.code == session_store.ROTATED and rotated.claims is not None
        stale = rotated.claims
        assert session_store.touch_claims(sid)  # a change committed after the rotation's read
        assert not session_store.fill_claims(sid, rotated.cv, stale, None)
        assert redis_store.client.hget(keys.session(str(sid)), "claims") is None
        assert not session_store.touch_claims(uuid.uuid4())  # never creates a hash
        assert not redis_store.client.exists(keys.session(str(uuid.uuid4())))


def test_claims_older_than_the_max_age_are_read_again(app, client, parent, clock):
    with app.app_context():
        db.session.execute(text("UPDATE families SET tier = 'premium'"))  # by hand: no invalidation
        db.session.commit()
    assert parent.claims()["tier"] == "basic"  # still the cached claims
    clock.advance(app.config["SESSION_CLAIMS_MAX_AGE"] + 1)
    assert parent.claims()["tier"] == "premium"


def test_a_redis_failure_before_commit_refuses_the_change(app, client, parent, family, monkeypatch):
    def down(sid):
        raise redis.ConnectionError("down")

    monkeypatch.setattr(session_store, "touch_claims", down)
    created = family.create_child(parent.tokens, "robin")
    assert_problem(created, 503, "unavailable")
    monkeypatch.undo()
    with app.app_context():
        assert db.session.scalar(db.select(db.func.count()).where(Account.role == "child")) == 0
    assert parent.claims()["children"] == []


def test_a_second_factor_checked_after_warming_reaches_the_next_refresh(app, parent):
    from storyverse_auth.mfa import service as mfa

    with app.app_context():
        mfa.mark_session(parent.sid)
    assert parent.claims()["amr"] == ["pwd", "otp", "mfa"]


def test_a_cached_principal_of_another_account_is_ignored(app, parent):
    with app.app_context():
        text_ = cached(app, parent.sid)
        assert claims_cache.loads(text_, uuid.uuid4()) is None
        assert claims_cache.loads(text_, uuid.UUID(claims_of(parent.tokens)["sub"])) is not None


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({}, 422),
        ({"refresh_token": ""}, 422),
        ({"refresh_token": "x" * 513}, 422),
        ({"refresh_token": 5}, 422),
        ({"refresh_token": None}, 422),
        ([], 422),
        ({"refresh_token": "svrt_not-a-token"}, 401),
        ({"refresh_token": "svrt_not-a-token", "other": 1}, 422),
    ],
)
def test_bad_refresh_bodies_are_problems_from_the_schema(client, body, status):
    response = client.post("/api/auth/refresh", json=body)
    assert response.status_code == status, response.get_json()
    assert response.mimetype == "application/problem+json"


def test_a_malformed_refresh_body_is_a_400_problem(client):
    response = client.post("/api/auth/refresh", data=b'{"refresh_token": ', content_type="application/json")
    assert response.status_code == 400 and response.mimetype == "application/problem+json"


def test_the_cli_refreshes_claims_after_a_change_by_hand(app, client, parent, runner):
    family_id = claims_of(parent.tokens)["family_id"]
    with app.app_context():
        db.session.execute(text("UPDATE families SET tier = 'premium'"))
        db.session.commit()
    result = runner.invoke(args=["sessions", "refresh-claims", "--family", family_id])
    assert result.exit_code == 0 and result.output.strip() == "sessions=1", result.output
    assert parent.claims()["tier"] == "premium"
    assert runner.invoke(args=["sessions", "refresh-claims"]).exit_code != 0
