"""Admin: `flask create-admin`, usage export (JSON and CSV), quota grants on sv-quota's counters, abuse blocks."""

import csv
import datetime as dt
import io
from zoneinfo import ZoneInfo

import jwt
import pytest
import redis
from auth_support import PASSWORD, TEST_REDIS_URL, assert_problem
from sqlalchemy import text
from storyverse_auth.extensions import db
from storyverse_auth.usage.sync import sync_usage
from storyverse_plugins.common import keys as plugin_keys
from storyverse_plugins.quota.abuse import list_blocks

ADMIN_EMAIL = "ops@example.com"


@pytest.fixture(autouse=True)
def clean_usage(app):
    with app.app_context():
        db.session.execute(text("TRUNCATE usage_daily"))
        db.session.commit()


@pytest.fixture
def r():
    return redis.Redis.from_url(TEST_REDIS_URL, decode_responses=True)


@pytest.fixture
def admin(runner, auth) -> dict:
    result = runner.invoke(args=["create-admin", ADMIN_EMAIL, "--password", PASSWORD])
    assert result.exit_code == 0, result.output
    response = auth.login(ADMIN_EMAIL)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def claims_of(tokens: dict) -> dict:
    return jwt.decode(tokens["access_token"], options={"verify_signature": False})


def paris_today(clock) -> str:
    return dt.datetime.fromtimestamp(clock(), ZoneInfo("Europe/Paris")).date().isoformat()


def test_create_admin_gives_an_admin_token(runner, admin):
    assert claims_of(admin)["role"] == "admin"
    again = runner.invoke(args=["create-admin", ADMIN_EMAIL, "--password", PASSWORD])
    assert again.exit_code != 0 and "already exists" in again.output
    weak = runner.invoke(args=["create-admin", "ops2@example.com", "--password", "short"])
    assert weak.exit_code != 0 and "weak password" in weak.output


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("get", "/api/auth/admin/usage", None),
        ("post", "/api/auth/admin/grants", {"family_id": "00000000-0000-0000-0000-000000000000", "stories": 1}),
        ("get", "/api/auth/admin/blocks", None),
    ],
)
def test_parents_and_children_are_not_admins(client, family, method, path, body):
    parent = family.parent()
    _, child = family.active_child(parent)
    for tokens in (parent, child):
        response = getattr(client, method)(path, json=body, headers=family.headers(tokens))
        assert_problem(response, 403, "admin_only")
    assert_problem(getattr(client, method)(path, json=body), 401, "invalid_token")


def seed_usage(app, r, family, clock) -> tuple[str, str]:
    parent = family.parent()
    child, _ = family.active_child(parent)
    fid = claims_of(parent)["family_id"]
    tag = "{f:" + fid + "}"
    today = paris_today(clock)
    r.hset(plugin_keys.quota_key(tag, "fam", today), mapping={"used": 3, "grant": 1})
    r.hset(plugin_keys.quota_key(tag, "c:" + child["id"], today), mapping={"used": 2})
    r.hset(plugin_keys.quota_key(tag, "fam", "2020-01-01"), mapping={"used": 9})  # outside the range
    with app.app_context():
        sync_usage()
    return fid, child["id"]


def test_export_json(app, client, family, clock, r, admin):
    fid, child_id = seed_usage(app, r, family, clock)
    today = paris_today(clock)
    response = client.get(
        "/api/auth/admin/usage", query_string={"from": today, "to": today}, headers=family.headers(admin)
    )
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert (body["from"], body["to"]) == (today, today)
    got = {(row["scope"], row["subject"]): (row["stories_used"], row["grants"]) for row in body["rows"]}
    assert got == {("family", ""): (3, 1), ("child", child_id): (2, 0)}
    assert {row["family_id"] for row in body["rows"]} == {fid}
    other = client.get(
        "/api/auth/admin/usage",
        query_string={"from": today, "to": today, "family_id": "00000000-0000-0000-0000-000000000000"},
        headers=family.headers(admin),
    )
    assert other.get_json()["rows"] == []


def test_export_csv(app, client, family, clock, r, admin):
    fid, child_id = seed_usage(app, r, family, clock)
    today = paris_today(clock)
    response = client.get(
        "/api/auth/admin/usage",
        query_string={"from": today, "to": today, "format": "csv"},
        headers=family.headers(admin),
    )
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert response.headers["Content-Disposition"] == (f'attachment; filename="storyverse-usage-{today}-{today}.csv"')
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert [(r["day"], r["family_id"], r["scope"], r["subject"], r["stories_used"], r["grants"]) for r in rows] == [
        (today, fid, "child", child_id, "2", "0"),
        (today, fid, "family", "", "3", "1"),
    ]


@pytest.mark.parametrize(
    "query",
    [{"from": "2026-02-01", "to": "2026-01-01"}, {"from": "2024-01-01", "to": "2026-01-01"}, {"format": "xml"}],
)
def test_export_rejects_bad_ranges(client, family, admin, query):
    response = client.get("/api/auth/admin/usage", query_string=query, headers=family.headers(admin))
    assert_problem(response, 422, "validation_failed")


def test_grant_to_a_family_and_to_a_child(client, family, clock, r, admin):
    parent = family.parent()
    child, _ = family.active_child(parent)
    fid = claims_of(parent)["family_id"]
    today = paris_today(clock)
    tag = "{f:" + fid + "}"
    response = client.post(
        "/api/auth/admin/grants", json={"family_id": fid, "stories": 2}, headers=family.headers(admin)
    )
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["day"] == today
    fam_key = plugin_keys.quota_key(tag, "fam", today)
    assert r.hget(fam_key, "grant") == "2" and r.ttl(fam_key) > 0
    response = client.post(
        "/api/auth/admin/grants", json={"account_id": child["id"], "stories": 1}, headers=family.headers(admin)
    )
    counters = {(c["scope"], c["subject"]): c["grant"] for c in response.get_json()["counters"]}
    assert counters == {("family", ""): 3, ("child", child["id"]): 1}
    assert r.hget(plugin_keys.quota_key(tag, "c:" + child["id"], today), "grant") == "1"
    # The parent sees it: 5 + 3 granted.
    usage = client.get("/api/auth/usage", headers=family.headers(parent)).get_json()
    assert usage["family"]["left"] == 8 and usage["children"][0]["left"] == 6


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"family_id": "00000000-0000-0000-0000-000000000000", "stories": 1}, 404, "family_not_found"),
        ({"account_id": "00000000-0000-0000-0000-000000000000", "stories": 1}, 404, "account_not_found"),
        ({"stories": 1}, 422, "validation_failed"),
        ({"family_id": "00000000-0000-0000-0000-000000000000", "stories": 0}, 422, "validation_failed"),
    ],
)
def test_grant_errors(client, family, admin, body, status, code):
    response = client.post("/api/auth/admin/grants", json=body, headers=family.headers(admin))
    assert_problem(response, status, code)


def test_blocks_lists_what_sv_quota_blocked(client, family, clock, r, admin):
    now_ms = int(clock() * 1000)
    key = plugin_keys.abuse_key("{ip:203.0.113.9}")
    r.hset(
        key,
        mapping={
            "until": now_ms + 60_000,
            "kind": "ip",
            "subject": "203.0.113.9",
            "reason": "strikes",
            "level": 1,
            "seen": now_ms,
        },
    )
    r.zadd(plugin_keys.BLOCKS_INDEX, {key: now_ms + 60_000})
    response = client.get("/api/auth/admin/blocks", headers=family.headers(admin))
    assert response.status_code == 200, response.get_json()
    blocks = response.get_json()["blocks"]
    assert [(b["key"], b["kind"], b["subject"], b["reason"]) for b in blocks] == [(key, "ip", "203.0.113.9", "strikes")]
    assert len(list_blocks(r)) == 1
