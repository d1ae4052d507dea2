"""Access-token claims for families (what sv-jwt forwards and sv-rbac / sv-quota enforce), parental controls taking
effect at the next refresh, and tightening changes that sign the child out."""

import jwt
import pytest
from auth_support import assert_problem
from storyverse_auth.children import controls
from storyverse_auth.extensions import db
from storyverse_auth.models import Account

CHILD_CLAIMS = {
    "age_band": str,
    "content_rating": str,
    "max_content_rating": str,
    "allowed_hours": str,
    "features": list,
    "daily_story_limit": int,
}


def claims_of(tokens: dict) -> dict:
    return jwt.decode(tokens["access_token"], options={"verify_signature": False})


def refresh(client, tokens: dict):
    return client.post("/api/auth/refresh", json={"refresh_token": tokens["refresh_token"]})


def patch(client, family, parent: dict, child_id: str, body: dict):
    return client.patch(f"/api/auth/children/{child_id}", json=body, headers=family.headers(parent))


def test_parent_claims_list_the_family_children(client, family):
    parent = family.parent()
    claims = claims_of(parent)
    assert (claims["role"], claims["children"], claims["tz"], claims["tier"]) == ("parent", [], "Europe/Paris", "basic")
    assert not set(CHILD_CLAIMS) & set(claims)
    created = family.create_child(parent).get_json()
    fresh = created["caller_token"]
    assert fresh["token_type"] == "Bearer" and fresh["expires_in"] == 600
    fresh_claims = claims_of(fresh)
    assert fresh_claims["children"] == [created["id"]]
    assert fresh_claims["sid"] == claims["sid"] and fresh_claims["sub"] == claims["sub"]
    assert client.get("/api/auth/me", headers=family.headers(fresh)).status_code == 200
    # The next refresh carries the list too.
    assert claims_of(refresh(client, parent).get_json())["children"] == [created["id"]]


def test_child_claims_exact_names_and_types(client, family):
    parent = family.parent()
    child, tokens = family.active_child(parent)
    claims = claims_of(tokens)
    assert {name: type(claims[name]) for name in CHILD_CLAIMS} == CHILD_CLAIMS
    assert claims["role"] == "child" and claims["sub"] == child["id"]
    assert claims["family_id"] == claims_of(parent)["family_id"]
    assert (claims["tier"], claims["tz"]) == ("basic", "Europe/Paris")
    assert {k: claims[k] for k in CHILD_CLAIMS} == {
        "age_band": "6-9",
        "content_rating": "TV-Y7",
        "max_content_rating": "TV-Y7",
        "allowed_hours": "07:00-20:00",
        "features": ["text"],
        "daily_story_limit": 5,
    }
    assert "children" not in claims and "email" not in claims and "username" not in claims


def test_content_rating_is_the_strictest(client, family):
    parent = family.parent()
    _, loose = family.active_child(parent, "robin", controls={"max_content_rating": "TV-14"})
    assert (claims_of(loose)["content_rating"], claims_of(loose)["max_content_rating"]) == ("TV-Y7", "TV-14")
    _, strict = family.active_child(parent, "sam", controls={"max_content_rating": "TV-Y"})
    assert (claims_of(strict)["content_rating"], claims_of(strict)["max_content_rating"]) == ("TV-Y", "TV-Y")


def test_loosening_applies_at_the_next_refresh_without_signing_out(client, family):
    parent = family.parent()
    child, tokens = family.active_child(parent)
    body = {
        "controls": {"features": ["text", "image", "audio"], "allowed_hours": "00:00-24:00", "daily_story_limit": 5}
    }
    assert patch(client, family, parent, child["id"], body).status_code == 200
    assert client.get("/api/auth/me", headers=family.headers(tokens)).status_code == 200  # still signed in
    assert claims_of(tokens)["features"] == ["text"]  # the old token keeps its claims until it expires
    claims = claims_of(refresh(client, tokens).get_json())
    assert (claims["features"], claims["allowed_hours"]) == (["text", "image", "audio"], "00:00-24:00")


@pytest.mark.parametrize(
    "body",
    [
        {"controls": {"max_content_rating": "TV-Y"}},
        {"controls": {"daily_story_limit": 2}},
        {"controls": {"allowed_hours": "08:00-20:00"}},
        {"controls": {"allowed_hours": "19:00-07:00"}},
        {"controls": {"features": []}},
    ],
    ids=["rating", "daily-limit", "hours-later-start", "hours-overnight", "features"],
)
def test_tightening_signs_the_child_out(client, family, body):
    parent = family.parent()
    child, tokens = family.active_child(parent)
    assert patch(client, family, parent, child["id"], body).status_code == 200
    assert_problem(client.get("/api/auth/me", headers=family.headers(tokens)), 401, "token_revoked")
    assert_problem(refresh(client, tokens), 401, "invalid_refresh_token")
    again = family.child_login(family.family_code(parent)).get_json()
    claims = claims_of(again)
    for name, value in body["controls"].items():
        assert claims[name] == value


def test_a_younger_birth_year_signs_the_child_out(client, family):
    parent = family.parent()
    child, tokens = family.active_child(parent, controls={"max_content_rating": "TV-14"})
    body = {"birth_year": family.child_birth_year + 4, "current_password": "correct horse battery staple twice"}
    assert patch(client, family, parent, child["id"], body).status_code == 200
    assert_problem(client.get("/api/auth/me", headers=family.headers(tokens)), 401, "token_revoked")
    claims = claims_of(family.child_login(family.family_code(parent)).get_json())
    assert (claims["age_band"], claims["content_rating"]) == ("3-5", "TV-Y")


def test_renaming_does_not_sign_the_child_out(client, family):
    parent = family.parent()
    child, tokens = family.active_child(parent)
    assert patch(client, family, parent, child["id"], {"display_name": "Rob"}).status_code == 200
    assert client.get("/api/auth/me", headers=family.headers(tokens)).status_code == 200


def test_daily_limit_follows_the_tier(app, client, family):
    parent = family.parent()
    with app.app_context():
        account = db.session.scalar(db.select(Account).where(Account.email == "parent@example.com"))
        account.family.tier = "premium"
        db.session.commit()
    _, tokens = family.active_child(parent, controls={"daily_story_limit": 20})
    assert claims_of(tokens)["daily_story_limit"] == 20
    with app.app_context():
        account = db.session.scalar(db.select(Account).where(Account.email == "parent@example.com"))
        account.family.tier = "basic"
        db.session.commit()
    claims = claims_of(refresh(client, tokens).get_json())
    assert (claims["tier"], claims["daily_story_limit"]) == ("basic", 5)


# --- the pure rules -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("birth_year", "band"),
    [
        (2026, "0-2"),
        (2023, "0-2"),
        (2022, "3-5"),
        (2020, "3-5"),
        (2019, "6-9"),
        (2016, "6-9"),
        (2015, "10-12"),
        (2013, "10-12"),
        (2012, "13-15"),
        (2010, "13-15"),
        (2009, "16-17"),
        (2008, "16-17"),
    ],
)
def test_age_band_from_birth_year(birth_year, band):
    assert controls.age_band(birth_year, 2026) == band  # the age reached for certain: year - birth_year - 1


def test_birth_year_bounds():
    assert controls.birth_year_allowed(2026, 2026) and controls.birth_year_allowed(2008, 2026)
    assert not controls.birth_year_allowed(2007, 2026) and not controls.birth_year_allowed(2027, 2026)


@pytest.mark.parametrize(
    ("text", "minutes"),
    [("00:00-24:00", 1440), ("07:00-19:30", 750), ("19:00-07:00", 720), ("23:59-00:01", 2), ("24:00-07:00", 0)],
)
def test_windows(text, minutes):
    assert len(controls.window_minutes(text)) == minutes


def test_tightened_by():
    base = controls.Controls("TV-G", 5, "07:00-20:00", ("text", "image"))
    assert not base.tightened_by(base)
    assert not base.tightened_by(controls.Controls("TV-PG", 5, "00:00-24:00", ("text", "image", "audio")))
    assert base.tightened_by(controls.Controls("TV-Y7", 5, "07:00-20:00", ("text", "image")))
    assert base.tightened_by(controls.Controls("TV-G", 4, "07:00-20:00", ("text", "image")))
    assert base.tightened_by(controls.Controls("TV-G", 5, "06:00-19:59", ("text", "image", "audio")))
    assert base.tightened_by(controls.Controls("TV-G", 5, "07:00-20:00", ("image",)))
