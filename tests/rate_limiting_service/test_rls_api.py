"""The HTTP API against real PostgreSQL and Redis: tokens verified against a JWKS (deny by default, one error
format), the parents' usage view, and the admin API (export, grants, blocks, occasions, plans)."""

from __future__ import annotations

import base64
import datetime as dt
import time
import uuid

import pytest
from rls_support import add_account, add_family
from storyverse_contracts.keys import BLOCKS_INDEX, child_key, family_key


def assert_problem(resp, status: int, code: str) -> None:
    assert resp.status_code == status, resp.get_data(as_text=True)
    assert resp.headers["Content-Type"] == "application/problem+json"
    body = resp.get_json()
    assert (body["status"], body["code"]) == (status, code)


@pytest.fixture
def family(pg):
    family_id = add_family(pg, "basic", "Europe/Paris")
    parent = add_account(pg, family_id, "parent", "Pat")
    kid = add_account(pg, family_id, "child", "Ada", limit=3)
    return {"id": family_id, "parent": parent, "kid": kid}


@pytest.fixture
def admin(pg, signer):
    ops = add_family(pg)
    admin_id = add_account(pg, ops, "admin", "Operator")
    return signer.bearer({"sub": admin_id, "role": "admin", "family_id": ops})


def parent_headers(signer, family, **extra):
    return signer.bearer({"sub": family["parent"], "role": "parent", "family_id": family["id"]} | extra)


def today(tz: str = "Europe/Paris") -> str:
    from storyverse_plans import local_day

    return local_day(time.time(), tz).date


@pytest.mark.parametrize("path", ["/api/auth/usage", "/api/rate-limits/blocks", "/api/rate-limits/usage"])
def test_no_token_is_401(client, path):
    assert_problem(client.get(path), 401, "unauthenticated")


def test_forged_tokens_are_401(client, signer, family):
    good = parent_headers(signer, family)["Authorization"].removeprefix("Bearer ")
    header, payload, sig = good.split(".")
    claims = {"sub": family["parent"], "role": "admin", "family_id": family["id"]}
    tampered = base64.urlsafe_b64encode(str(claims).encode()).decode().rstrip("=")
    none_alg = base64.urlsafe_b64encode(b'{"alg":"none","typ":"at+jwt","kid":"rls-test-key"}').decode().rstrip("=")
    for token in (f"{header}.{tampered}.{sig}", f"{none_alg}.{payload}.", "not-a-jwt", good + "x"):
        assert_problem(
            client.get("/api/auth/usage", headers={"Authorization": f"Bearer {token}"}), 401, "unauthenticated"
        )
    expired = signer.bearer({"sub": family["parent"], "role": "parent", "exp": int(time.time()) - 120})
    assert_problem(client.get("/api/auth/usage", headers=expired), 401, "unauthenticated")
    wrong_aud = signer.bearer({"sub": family["parent"], "role": "parent", "aud": "someone-else"})
    assert_problem(client.get("/api/auth/usage", headers=wrong_aud), 401, "unauthenticated")
    id_token = signer.bearer({"sub": family["parent"], "role": "parent"}, typ="JWT")
    assert_problem(client.get("/api/auth/usage", headers=id_token), 401, "unauthenticated")


def test_parent_sees_the_pool_each_child_and_the_history(client, signer, family, rdb, app):
    day = today()
    rdb.hset(family_key(family["id"], day), mapping={"used": 2, "grant": 1})
    rdb.hset(child_key(family["id"], family["kid"], day), mapping={"used": 2})
    rdb.hset(family_key(family["id"], day), "r:rid-1", int(time.time() * 1000) + 60_000)  # a unit in flight
    resp = client.get("/api/auth/usage?days=3", headers=parent_headers(signer, family))
    assert resp.status_code == 200, resp.get_json()
    body = resp.get_json()
    assert (body["tier"], body["time_zone"], body["day"]) == ("basic", "Europe/Paris", day)
    assert body["family"] == {"limit": 5, "used": 2, "granted": 1, "in_flight": 1, "left": 3}
    (ada,) = body["children"]
    assert (ada["display_name"], ada["daily_story_limit"], ada["used"], ada["left"]) == ("Ada", 3, 2, 1)
    assert ada["message"] == "1 story left tonight"
    assert body["history"] == []


def test_children_and_api_keys_without_the_usage_scope_are_refused(client, signer, family):
    child = signer.bearer({"sub": family["kid"], "role": "child", "family_id": family["id"]})
    assert_problem(client.get("/api/auth/usage", headers=child), 403, "forbidden")
    key_token = parent_headers(signer, family, plan="basic", scope="stories:read")
    assert_problem(client.get("/api/auth/usage", headers=key_token), 403, "insufficient_scope")
    scoped = parent_headers(signer, family, plan="basic", scope="stories:read usage:read")
    assert client.get("/api/auth/usage", headers=scoped).status_code == 200


def test_a_parent_of_no_family_gets_403(client, signer):
    orphan = signer.bearer({"sub": str(uuid.uuid4()), "role": "parent", "family_id": str(uuid.uuid4())})
    assert_problem(client.get("/api/auth/usage", headers=orphan), 403, "parent_only")


def test_admin_endpoints_need_an_admin_account_not_just_the_claim(client, signer, family):
    claims_only = signer.bearer({"sub": family["parent"], "role": "admin", "family_id": family["id"]})
    assert_problem(client.get("/api/rate-limits/blocks", headers=claims_only), 403, "admin_only")
    assert_problem(client.get("/api/rate-limits/blocks", headers=parent_headers(signer, family)), 403, "forbidden")


def test_grants_raise_todays_counters(client, admin, family, rdb):
    resp = client.post("/api/rate-limits/grants", json={"account_id": family["kid"], "stories": 2}, headers=admin)
    assert resp.status_code == 200, resp.get_json()
    body = resp.get_json()
    assert [(c["scope"], c["grant"]) for c in body["counters"]] == [("family", 2), ("child", 2)]
    assert rdb.hget(family_key(family["id"], today()), "grant") == "2"
    assert 0 < rdb.ttl(family_key(family["id"], today())) <= 2 * 86_400 + 3_600
    assert_problem(client.post("/api/rate-limits/grants", json={"stories": 2}, headers=admin), 422, "validation_failed")
    missing = {"family_id": str(uuid.uuid4()), "stories": 1}
    assert_problem(client.post("/api/rate-limits/grants", json=missing, headers=admin), 404, "family_not_found")


def test_blocks_are_listed_and_lifted(client, admin, rdb):
    key = "sv:quota:v1:{ip:203.0.113.9}:ab"
    until = int(time.time() * 1000) + 600_000
    rdb.hset(key, mapping={"until": until, "kind": "ip", "subject": "203.0.113.9", "reason": "strikes", "level": 2})
    rdb.set("sv:quota:v1:{ip:203.0.113.9}:blk", until, px=600_000)
    rdb.zadd(BLOCKS_INDEX, {key: until})
    (block,) = client.get("/api/rate-limits/blocks", headers=admin).get_json()["blocks"]
    assert (block["kind"], block["subject"], block["level"]) == ("ip", "203.0.113.9", 2)
    resp = client.delete(f"/api/rate-limits/blocks/{block['id']}", headers=admin)
    assert resp.get_json() == {"id": block["id"], "lifted": 1}
    assert rdb.hget(key, "until") is None and rdb.hget(key, "level") == "2"  # escalation remembered
    assert not rdb.exists("sv:quota:v1:{ip:203.0.113.9}:blk")  # the copy sv-quota enforces is gone too
    assert client.get("/api/rate-limits/blocks", headers=admin).get_json()["blocks"] == []
    assert client.delete(f"/api/rate-limits/blocks/{block['id']}", headers=admin).get_json()["lifted"] == 0
    other = base64.urlsafe_b64encode(b"sv:auth:v1:something").decode().rstrip("=")
    assert_problem(client.delete(f"/api/rate-limits/blocks/{other}", headers=admin), 404, "block_not_found")


def test_occasions_are_set_listed_and_removed(client, admin):
    assert client.put("/api/rate-limits/occasions/12-24", json={"extra": 3}, headers=admin).status_code == 200
    resp = client.put("/api/rate-limits/occasions/2026-06-01", json={"extra": 1}, headers=admin)
    assert resp.get_json()["occasions"] == [{"date": "12-24", "extra": 3}, {"date": "2026-06-01", "extra": 1}]
    for bad in ("13-40", "xmas", "2026-02-30"):
        assert_problem(client.put(f"/api/rate-limits/occasions/{bad}", json={"extra": 1}, headers=admin), 422,
                       "validation_failed")  # fmt: skip
    assert_problem(client.put("/api/rate-limits/occasions/12-25", json={"extra": 0}, headers=admin), 422,
                   "validation_failed")  # fmt: skip
    assert client.delete("/api/rate-limits/occasions/12-24", headers=admin).status_code == 204
    assert_problem(client.delete("/api/rate-limits/occasions/12-24", headers=admin), 404, "occasion_not_found")


def test_export_json_and_csv(client, admin, app, family):
    from storyverse_ratelimit.extensions import db
    from storyverse_ratelimit.models import UsageDaily

    day = dt.date(2026, 12, 24)
    with app.app_context():
        db.session.add(UsageDaily(family_id=family["id"], scope="family", subject="", day=day, stories_used=5,
                                  grants=1, synced_at=dt.datetime.now(dt.UTC)))  # fmt: skip
        db.session.commit()
    resp = client.get("/api/rate-limits/usage?from=2026-12-01&to=2026-12-31", headers=admin)
    (row,) = resp.get_json()["rows"]
    assert (row["family_id"], row["stories_used"], row["grants"]) == (family["id"], 5, 1)
    csv = client.get("/api/rate-limits/usage?from=2026-12-01&to=2026-12-31&format=csv", headers=admin)
    assert csv.mimetype == "text/csv"
    lines = csv.get_data(as_text=True).splitlines()
    assert lines[0].startswith("day,family_id,scope") and lines[1].startswith(f"2026-12-24,{family['id']},family,,5,1")
    assert_problem(client.get("/api/rate-limits/usage?from=2026-12-31&to=2026-01-01", headers=admin), 422,
                   "validation_failed")  # fmt: skip


def test_plans_are_the_shared_ones(client, admin):
    plans = client.get("/api/rate-limits/plans", headers=admin).get_json()["plans"]
    assert plans == [
        {"tier": "basic", "daily": 5, "rate_burst": 0},
        {"tier": "premium", "daily": 20, "rate_burst": 5},
        {"tier": "partner-basic", "daily": 100, "rate_burst": 5},
        {"tier": "partner-premium", "daily": 1000, "rate_burst": 20},
    ]


def test_health_and_readiness(client):
    assert client.get("/healthz").get_json() == {"status": "ok"}
    assert client.get("/readyz").get_json() == {"status": "ok"}


def test_readiness_fails_closed_when_redis_is_down(app):
    app.config["REDIS_URL"] = "redis://127.0.0.1:1/0"
    from storyverse_ratelimit.extensions import redis_store

    redis_store.init_app(app)
    try:
        assert_problem(app.test_client().get("/readyz"), 503, "unavailable")
    finally:
        app.config["REDIS_URL"] = "redis://127.0.0.1:6379/13"
        redis_store.init_app(app)
