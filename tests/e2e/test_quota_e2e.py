"""sv-quota end to end with real tokens: client → emulator (strict) → sv-jwt, sv-quota, sv-quota-log → backends.

Tokens come from the real auth service (register + login); limits live in the shared Redis, db 6 (flushed per test).
The log phase runs after the client has its answer (as in Kong), so commits and releases are awaited by polling
Redis with a bounded wait, never by sleeping blindly.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from collections import Counter

import aiohttp
import pytest
import redis
import requests
from e2e_support import repo_plugin
from storyverse_contracts import keys
from storyverse_plugins.quota.tiers import local_day

DB = 6
QUOTA_PLUGINS = [repo_plugin("sv-jwt"), repo_plugin("sv-quota"), repo_plugin("sv-quota-log")]
PASSWORD = "quota-e2e correct horse battery"
TZ = "Asia/Tokyo"


def claims_of(token: str) -> dict:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def register_and_login(auth_url: str, tz: str = TZ) -> tuple[str, dict]:
    email = f"quota-{uuid.uuid4().hex[:10]}@example.com"
    body = {"email": email, "password": PASSWORD, "display_name": "Quota Parent", "time_zone": tz}
    assert requests.post(auth_url + "/api/auth/register", json=body, timeout=30).status_code == 202
    resp = requests.post(auth_url + "/api/auth/login", json={"email": email, "password": PASSWORD}, timeout=30)
    assert resp.status_code == 200, resp.text
    token = resp.json()["access_token"]
    return token, claims_of(token)


@pytest.fixture(scope="module")
def auth_service():
    """The real auth service under gunicorn, for this module only: its own database and Redis db 6.

    Overrides the session fixture so that other runs in a shared working tree (which drop `storyverse_e2e` and flush
    Redis db 5) cannot pull the database from under these tests, and waits patiently on a busy host."""
    from e2e_support import auth_env, start_auth_service
    from kong_emulator.testing import free_port, wait_port

    port, issuer = free_port(), "http://storyverse.test"
    proc = start_auth_service(port, auth_env("storyverse_e2e_quota", DB, issuer))
    url = f"http://127.0.0.1:{port}"
    try:
        wait_port(port, seconds=60, proc=proc)
        assert wait_for(lambda: _healthy(url), 60), "auth service not healthy"
        yield {"url": url, "issuer": issuer, "jwks_url": url + "/.well-known/jwks.json", "redis_db": DB}
    finally:
        proc.terminate()
        proc.wait(10)


def _healthy(url: str) -> bool:
    try:
        return requests.get(url + "/healthz", timeout=10).status_code == 200
    except requests.RequestException:
        return False


@pytest.fixture(scope="module")
def account(auth_service):
    """One basic account (its own family) for the module; each test flushes db 6, so usage starts at 0."""
    token, claims = register_and_login(auth_service["url"])
    assert claims["tier"] == "basic" and claims["tz"] == TZ
    return {"token": token, "claims": claims, "auth": {"Authorization": f"Bearer {token}"}}


@pytest.fixture
def rdb():
    client = redis.Redis(db=DB)
    client.flushdb()
    yield client
    client.flushdb()


def quota_key(claims: dict) -> str:
    """The family's counter hash of today: used, grant and a field r:<rid> per held unit."""
    return keys.quota_key(keys.subject_tag(claims, None), "fam", local_day(time.time(), claims["tz"]).date)


def held_units(rdb: redis.Redis, counter: str) -> int:
    return sum(1 for field in rdb.hkeys(counter) if field.startswith(keys.RESERVATION.encode()))


def wait_for(predicate, seconds: float = 5.0):
    """Poll until predicate() is truthy (the log phase settles after the response); return its last value."""
    deadline = time.monotonic() + seconds
    value = predicate()
    while not value and time.monotonic() < deadline:
        time.sleep(0.02)
        value = predicate()
    return value


def settled_usage(rdb: redis.Redis, claims: dict, seconds: float = 5.0) -> int:
    """Committed units once no reservation is in flight (bounded wait)."""
    counter = quota_key(claims)
    assert wait_for(lambda: held_units(rdb, counter) == 0, seconds), "reservations still held"
    return int(rdb.hget(counter, "used") or 0)


def jwt_plugin(auth_service: dict) -> str:
    return f"""
          - name: sv-jwt
            config:
              jwks_url: {auth_service["jwks_url"]}
              issuer: {auth_service["issuer"]}
              audience: storyverse-api
              redis_database: {auth_service["redis_db"]}"""


def quota_plugin(extra: str = "") -> str:
    """sv-quota (access) and sv-quota-log (its log phase: the reservation settle) with the same config."""
    config = f"""
            config:
              redis_database: {DB}
              retry_after_jitter_max: 1
              quota:
                enabled: true{extra}"""
    return f"""
          - name: sv-quota{config}
          - name: sv-quota-log{config}"""


def kong_yml(backend: dict, auth_service: dict) -> str:
    stories, jwt = backend["stories"], jwt_plugin(auth_service)
    return f"""
_format_version: "3.0"
services:
  - name: stories
    url: {stories}/api/v1/stories
    routes:
      - name: create-story
        methods: [POST]
        paths: ["/api/v1/stories"]
        plugins:{jwt}{quota_plugin()}
  - name: failing
    url: {stories}/__status/503
    routes:
      - name: create-failing
        paths: ["/api/v1/failing"]
        plugins:{jwt}{quota_plugin()}
  - name: slow
    url: {stories}/__sleep
    read_timeout: 300
    routes:
      - name: create-slow
        paths: ["/api/v1/slow"]
        plugins:{jwt}{quota_plugin()}
  - name: login
    url: {auth_service["url"]}/api/auth/login
    routes:
      - name: login
        methods: [POST]
        paths: ["/api/auth/login"]
        plugins:
          - name: sv-quota
            config:
              redis_database: {DB}
              retry_after_jitter_max: 0
              policies:
                - {{name: login, limit: 3, period: minute, by: ip}}
plugins:
  - name: sv-edge  # sets sv-quota's RateLimit/X-Quota headers from its decision mark; 503 without the mark
    config: {{require: [sv-quota], strip_version: false}}  # keep the services' own paths
"""


async def burst(url: str, headers: dict, n: int, in_flight: int = 50) -> list[tuple[int, dict, dict]]:
    """n POSTs fired together, at most `in_flight` on the wire at once, each on its own connection.

    (status, headers, json body) per request. The cap keeps a 2-core machine (load generator, emulator, plugin
    servers, Redis and PostgreSQL on the same cores) from starving Redis past its 100 ms client timeout, which
    would turn the test into a measure of the scheduler; 50 simultaneous creations against a limit of 5 is still
    a thundering herd that only an atomic check-and-charge survives.
    """

    async def one(session: aiohttp.ClientSession) -> tuple[int, dict, dict]:
        async with session.post(url, json={"title": "A dragon at bedtime"}, headers=headers) as resp:
            return resp.status, dict(resp.headers), await resp.json(content_type=None)

    connector = aiohttp.TCPConnector(limit=in_flight, force_close=True)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as session:
        return await asyncio.gather(*(one(session) for _ in range(n)))


def test_200_concurrent_story_creations_exactly_five_succeed(backend, auth_service, gateway, account, rdb):
    gw = gateway(kong_yml(backend, auth_service), QUOTA_PLUGINS)
    # warm-up that charges nothing (upstream 503: released): sv-jwt's JWKS and sv-quota's script and pool are ready
    for _ in range(4):  # every simulated worker's instances and pools get ready, JWKS included
        warm = requests.post(gw.url + "/api/v1/failing", json={}, headers=account["auth"], timeout=30)
        assert warm.status_code == 503
    assert settled_usage(rdb, account["claims"]) == 0
    reset_before = int(local_day(time.time(), TZ).reset_s - time.time())
    results = asyncio.run(burst(gw.url + "/api/v1/stories", account["auth"], 200))
    statuses = Counter(status for status, _, _ in results)
    odd = [body for status, _, body in results if status not in (201, 429)][:3]
    odd += [line[-300:] for line in gw.output().splitlines() if "sv-quota redis" in line][:3]
    assert (statuses[201], statuses[429]) == (5, 195), (statuses, odd)

    reset_s = int(local_day(time.time(), TZ).reset_s - time.time())
    for status, headers, body in results:
        assert headers["RateLimit-Policy"] == '"stories";q=5;w=86400'
        assert headers["X-Quota-Limit"] == "5"
        assert reset_s - 1 <= int(headers["X-Quota-Reset"]) <= reset_before + 1  # a busy host makes the burst long
        if status == 201:
            assert int(headers["X-Quota-Remaining"]) in range(5) and "Retry-After" not in headers
            assert body["item"]["title"] == "A dragon at bedtime"
            continue
        assert headers["Content-Type"] == "application/problem+json"
        assert headers["X-Quota-Remaining"] == "0"
        assert headers["RateLimit"].startswith('"stories";r=0;t=')
        # 1-2 s while other units are still in flight (they may be released), else until the family's midnight
        assert 1 <= int(headers["Retry-After"]) <= reset_before + 3
        assert body["code"] == "quota_exceeded" and body["status"] == 429
        assert body["type"].endswith("/quota-exceeded") and body["limit"] == 5 and body["remaining"] == 0
    assert settled_usage(rdb, account["claims"]) == 5

    # the day is used up: the next one is refused until midnight in Tokyo, and costs nothing
    resp = requests.post(gw.url + "/api/v1/stories", json={}, headers=account["auth"], timeout=10)
    assert resp.status_code == 429 and abs(int(resp.headers["Retry-After"]) - reset_s) <= 3
    assert settled_usage(rdb, account["claims"]) == 5


def test_definite_failures_refund_and_a_gateway_timeout_is_charged(backend, auth_service, gateway, account, rdb):
    """Issue 15.3: a backend's 503 and requests refused before it consume nothing; a 504 (the gateway stopped
    waiting, the backend went on and finished: slow generations were free) is charged like the success it may be."""
    gw = gateway(kong_yml(backend, auth_service), QUOTA_PLUGINS)
    for _ in range(3):
        failed = requests.post(gw.url + "/api/v1/failing", json={}, headers=account["auth"], timeout=10)
        assert failed.status_code == 503
    no_token = requests.post(gw.url + "/api/v1/stories", json={}, timeout=10)
    assert no_token.status_code == 401  # rejected by sv-jwt before sv-quota: nothing reserved
    assert settled_usage(rdb, account["claims"]) == 0

    slow = requests.post(gw.url + "/api/v1/slow?ms=2000", json={}, headers=account["auth"], timeout=10)
    assert slow.status_code == 504
    assert settled_usage(rdb, account["claims"]) == 1
    ok = requests.post(gw.url + "/api/v1/stories", json={"title": "t"}, headers=account["auth"], timeout=10)
    assert ok.status_code == 201 and ok.headers["X-Quota-Remaining"] == "3"
    assert settled_usage(rdb, account["claims"]) == 2


def test_anonymous_login_route_is_limited_per_ip(backend, auth_service, gateway, rdb):
    gw = gateway(kong_yml(backend, auth_service), QUOTA_PLUGINS)
    body = {"email": "nobody-quota@example.com", "password": "not the password at all"}
    answers = [requests.post(gw.url + "/api/auth/login", json=body, timeout=30) for _ in range(4)]
    assert [a.status_code for a in answers[:3]] == [401] * 3  # the auth service's own answer
    assert [a.headers["RateLimit"] for a in answers[:3]] == ['"login";r=2;t=20', '"login";r=1;t=40', '"login";r=0;t=60']
    limited = answers[3]
    assert limited.status_code == 429 and limited.headers["Content-Type"] == "application/problem+json"
    assert limited.json()["code"] == "rate_limited" and limited.json()["limit"] == 3
    assert limited.headers["RateLimit-Policy"] == '"login";q=3;w=60'
    assert limited.headers["Retry-After"] == "20"
    assert rdb.exists(keys.rate_key(keys.subject_tag(None, "127.0.0.1"), "login", None))


# -- abuse detection -------------------------------------------------------------------------------------------------
ABUSE_YML = """
_format_version: "3.0"
services:
  - name: login
    url: {auth}/api/auth/login
    routes:
      - name: login
        methods: [POST]
        paths: ["/api/auth/login"]
        plugins:
          - name: sv-quota
            config:
              redis_database: {db}
              policies:
                - {{name: login, limit: 100, period: minute, by: ip}}
              abuse: {{login: true, login_distinct: 4, threshold: 100}}
          - name: sv-quota-log
            config:
              redis_database: {db}
              policies:
                - {{name: login, limit: 100, period: minute, by: ip}}
              abuse: {{login: true, login_distinct: 4, threshold: 100}}
  - name: forbidden
    url: {stories}/__status/403
    routes:
      - name: forbidden
        paths: ["/api/v1/forbidden"]
        plugins:{jwt}
          - name: sv-quota
            config:
              redis_database: {db}
              policies:
                - {{name: per-min, limit: 100, period: minute}}
              abuse: {{threshold: 3, window: 60, block_base: 60}}
          - name: sv-quota-log
            config:
              redis_database: {db}
              policies:
                - {{name: per-min, limit: 100, period: minute}}
              abuse: {{threshold: 3, window: 60, block_base: 60}}
"""


def metrics_text(port: int) -> str:
    return requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text


def test_credential_stuffing_blocks_the_ip_and_is_counted(backend, auth_service, gateway, rdb):
    from kong_emulator.testing import free_port
    from storyverse_plugins.quota.abuse import list_blocks

    port, log_port = free_port(), free_port()
    yml = ABUSE_YML.format(auth=auth_service["url"], stories=backend["stories"], db=DB, jwt=jwt_plugin(auth_service))
    env = {"SV_QUOTA_METRICS_PORT": str(port), "SV_QUOTA_LOG_METRICS_PORT": str(log_port)}
    gw = gateway(yml, QUOTA_PLUGINS, env=env)
    block_key = keys.abuse_key(keys.subject_tag(None, "127.0.0.1"))
    for i in range(4):  # four different accounts fail from one IP
        body = {"email": f"victim{i}-{uuid.uuid4().hex[:6]}@example.com", "password": "guessed password 123"}
        assert requests.post(gw.url + "/api/auth/login", json=body, timeout=30).status_code == 401
    assert wait_for(lambda: rdb.hget(block_key, "until")), "no block after distinct failed logins"
    blocked = requests.post(
        gw.url + "/api/auth/login", json={"email": "x@example.com", "password": "p" * 15}, timeout=10
    )
    assert blocked.status_code == 429 and blocked.json()["reason"] == "abuse_block"
    assert blocked.json()["code"] == "rate_limited" and 59 <= int(blocked.headers["Retry-After"]) <= 61
    [entry] = list_blocks(rdb)
    assert (entry["kind"], entry["subject"], entry["reason"]) == ("ip", "127.0.0.1", "credential_stuffing")
    # the failed logins are struck in sv-quota-log's log phase: its server counts the block
    assert 'sv_quota_abuse_blocks_total{subject="ip",reason="credential_stuffing"} 1' in metrics_text(log_port)


RBAC_YML = """
_format_version: "3.0"
services:
  - name: admin-only
    url: {stories}/__status/200
    routes:
      - name: admin-only
        paths: ["/api/v1/admin-only"]
        plugins:{jwt}
          - name: sv-rbac
            config:
              rules: [{{methods: [GET], roles: [admin]}}]
          - name: sv-quota
            config: &quota
              redis_database: {db}
              policies:
                - {{name: per-min, limit: 100, period: minute}}
              abuse: {{threshold: 3, window: 60, block_base: 60}}
          - name: sv-quota-log
            config: *quota
"""


def test_sv_rbac_refusals_are_not_abuse_strikes(backend, auth_service, gateway, account, rdb):
    """Issue 15.7: a parent's (or a child's) app asking again and again for a page its role may not see gets 403
    each time; it is never turned into a block of the account (backend 403s still are, test below)."""
    yml = RBAC_YML.format(stories=backend["stories"], db=DB, jwt=jwt_plugin(auth_service))
    gw = gateway(yml, [*QUOTA_PLUGINS, repo_plugin("sv-rbac")])
    claims = account["claims"]
    statuses = [
        requests.get(gw.url + "/api/v1/admin-only", headers=account["auth"], timeout=10).status_code for _ in range(6)
    ]
    assert statuses == [403] * 6
    time.sleep(0.5)  # the log phase runs after each answer: give the last ones time to (not) strike
    assert not rdb.exists(keys.abuse_key(keys.subject_tag(claims, None), claims["sub"]))


def test_repeated_403_blocks_the_account_with_growing_duration(backend, auth_service, gateway, account, rdb):
    from kong_emulator.testing import free_port

    port, log_port = free_port(), free_port()
    yml = ABUSE_YML.format(auth=auth_service["url"], stories=backend["stories"], db=DB, jwt=jwt_plugin(auth_service))
    env = {"SV_QUOTA_METRICS_PORT": str(port), "SV_QUOTA_LOG_METRICS_PORT": str(log_port)}
    gw = gateway(yml, QUOTA_PLUGINS, env=env)
    claims = account["claims"]
    block_key = keys.abuse_key(keys.subject_tag(claims, None), claims["sub"])
    for _ in range(3):
        assert requests.get(gw.url + "/api/v1/forbidden", headers=account["auth"], timeout=10).status_code == 403
    assert wait_for(lambda: rdb.hget(block_key, "until"))
    blocked = requests.get(gw.url + "/api/v1/forbidden", headers=account["auth"], timeout=10)
    assert blocked.status_code == 429 and blocked.json()["reason"] == "abuse_block"
    assert rdb.hget(block_key, "level") == b"1"
    # sv-quota strikes its own 429 right in access (the subject is already blocked: no new block); the 403s were
    # struck by sv-quota-log's log phase, whose server counted the block
    assert wait_for(lambda: 'sv_quota_abuse_strikes_total{status="429"} 1' in metrics_text(port))
    assert 'sv_quota_abuse_strikes_total{status="403"} 3' in metrics_text(log_port)
    assert 'sv_quota_abuse_blocks_total{subject="account",reason="strikes"} 1' in metrics_text(log_port)
    # the block ends (lifted here as if time passed; the level is kept): the next run of 403s blocks for twice as long
    from storyverse_plugins.quota.abuse import unblock

    assert unblock(rdb, block_key)
    gw2 = gateway(yml, QUOTA_PLUGINS)  # a fresh process: no cached block
    for _ in range(3):
        resp = requests.get(gw2.url + "/api/v1/forbidden", headers=account["auth"], timeout=10)
        assert resp.status_code == 403
    assert wait_for(lambda: rdb.hget(block_key, "level") == b"2")
    again = requests.get(gw2.url + "/api/v1/forbidden", headers=account["auth"], timeout=10)
    assert again.status_code == 429 and 119 <= int(again.headers["Retry-After"]) <= 121
