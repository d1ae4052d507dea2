"""GET /api/auth/usage: a parent sees the family pool and, per child, the stories left tonight (live from Redis, in
the family's time zone), plus the synced history."""

import datetime as dt
from zoneinfo import ZoneInfo

import jwt
import pytest
import redis
from auth_support import TEST_REDIS_URL, assert_problem
from sqlalchemy import text
from storyverse_auth.extensions import db
from storyverse_auth.usage.sync import sync_usage
from storyverse_plugins.common import keys as plugin_keys

PARIS = ZoneInfo("Europe/Paris")


@pytest.fixture(autouse=True)
def clean_usage(app):
    with app.app_context():
        db.session.execute(text("TRUNCATE usage_daily"))
        db.session.commit()


@pytest.fixture
def r():
    return redis.Redis.from_url(TEST_REDIS_URL, decode_responses=True)


def family_id(tokens: dict) -> str:
    return jwt.decode(tokens["access_token"], options={"verify_signature": False})["family_id"]


def paris_today(clock) -> str:
    return dt.datetime.fromtimestamp(clock(), PARIS).date().isoformat()


def key(tokens: dict, scope: str, day: str) -> str:
    return plugin_keys.quota_key("{f:" + family_id(tokens) + "}", scope, day)


def usage(client, family, tokens: dict, **query):
    return client.get("/api/auth/usage", query_string=query, headers=family.headers(tokens))


def test_parent_sees_stories_left_per_child(client, family, clock, r):
    parent = family.parent()
    robin, _ = family.active_child(parent, "robin", controls={"daily_story_limit": 3})
    sam, _ = family.active_child(parent, "sam")
    today = paris_today(clock)
    r.hset(key(parent, "fam", today), mapping={"used": 2})
    r.hset(key(parent, "c:" + robin["id"], today), mapping={"used": 1})
    r.hset(key(parent, "c:" + sam["id"], today), mapping={"used": 1})
    response = usage(client, family, parent)
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert (body["day"], body["time_zone"], body["tier"]) == (today, "Europe/Paris", "basic")
    assert body["family"] == {"limit": 5, "used": 2, "granted": 0, "in_flight": 0, "left": 3}
    by_name = {c["username"]: c for c in body["children"]}
    assert by_name["robin"]["left"] == 2 and by_name["robin"]["message"] == "2 stories left tonight"
    assert by_name["robin"]["daily_story_limit"] == 3
    assert by_name["sam"]["left"] == 3  # own limit 5 - 1, capped by the family pool (3)


def test_grants_and_in_flight_reservations_count(client, family, clock, r):
    parent = family.parent()
    robin, _ = family.active_child(parent, "robin", controls={"daily_story_limit": 2})
    today = paris_today(clock)
    own = key(parent, "c:" + robin["id"], today)
    r.hset(own, mapping={"used": 2, "grant": 1})
    r.zadd(plugin_keys.reservations_key(own), {"in-flight": int(clock() * 1000) + 60_000})
    r.zadd(plugin_keys.reservations_key(own), {"lapsed": int(clock() * 1000) - 1})
    child = usage(client, family, parent).get_json()["children"][0]
    assert (child["used"], child["granted"], child["in_flight"], child["left"]) == (2, 1, 1, 0)
    assert child["message"] == "No stories left tonight"


def test_the_day_is_the_familys_local_day(client, family, clock, r):
    # 23:30 UTC is already tomorrow in Paris: yesterday's (UTC) counter must not count.
    # (Yesterday's 23:30: PyJWT refuses an `iat` in the real future.)
    utc = dt.datetime.fromtimestamp(clock(), dt.UTC).replace(hour=23, minute=30, second=0, microsecond=0)
    utc -= dt.timedelta(days=1)
    clock.t = utc.timestamp()
    parent = family.parent()
    paris_day = paris_today(clock)
    assert paris_day != utc.date().isoformat()
    r.hset(key(parent, "fam", utc.date().isoformat()), mapping={"used": 5})
    r.hset(key(parent, "fam", paris_day), mapping={"used": 1})
    body = usage(client, family, parent).get_json()
    assert body["day"] == paris_day and body["family"]["used"] == 1
    resets = dt.datetime.fromisoformat(body["resets_at"]).astimezone(PARIS)
    day_after = (utc.date() + dt.timedelta(days=2)).isoformat()
    assert (resets.hour, resets.minute, resets.date().isoformat()) == (0, 0, day_after)


def test_history_comes_from_the_synced_table(app, client, family, clock, r):
    parent = family.parent()
    yesterday = (dt.datetime.fromtimestamp(clock(), PARIS).date() - dt.timedelta(days=1)).isoformat()
    r.hset(key(parent, "fam", yesterday), mapping={"used": 4, "grant": 1})
    with app.app_context():
        sync_usage()
    history = usage(client, family, parent, days=3).get_json()["history"]
    assert [(h["day"], h["scope"], h["stories_used"], h["grants"]) for h in history] == [(yesterday, "family", 4, 1)]
    assert usage(client, family, parent, days=0).get_json()["history"] == []


def test_children_and_strangers_are_refused(client, family):
    parent = family.parent()
    _, child_tokens = family.active_child(parent)
    assert_problem(usage(client, family, child_tokens), 403, "parent_only")
    assert_problem(client.get("/api/auth/usage"), 401, "invalid_token")
    assert_problem(usage(client, family, parent, days=91), 422, "validation_failed")
