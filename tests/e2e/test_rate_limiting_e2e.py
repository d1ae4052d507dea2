"""The rate limiting service in the whole layer: the repository's kong.yml (rendered for this test's ports), the Kong
emulator with every plugin server, the real auth service and rate limiting service under gunicorn, PostgreSQL, Redis
and the sample backend. Nothing of ours is mocked.

- A basic family creates its 5 stories; with no command run, the usage row reaches PostgreSQL within the sync
  interval, and an admin's export through the gateway shows it.
- Twenty requests without a token from one IP: sv-quota blocks the IP (abuse strikes); an admin
  sees the block through the gateway, lifts it, and the IP can sign in again.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid

import psycopg2
import pytest
import redis
import requests
from e2e_support import (
    AUTH_DIR,
    KongGateway,
    auth_env,
    rate_limiting_env,
    render_kong_yml,
    repo_plugins,
    start_auth_service,
    start_rate_limiting_service,
)
from kong_emulator.testing import free_port, wait_port

REDIS_DB = 11
DATABASE = "storyverse_rls_e2e"
ISSUER = "http://rls-e2e.storyverse.test"
PASSWORD = "a long and quiet bedtime password"
SYNC_INTERVAL = 1


@pytest.fixture(scope="module")
def stack(backend):
    redis.Redis(db=REDIS_DB).flushdb()
    port, rls_port = free_port(), free_port()
    auth_url, rls_url = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{rls_port}"
    env = auth_env(DATABASE, REDIS_DB, ISSUER)
    gw = KongGateway(render_kong_yml(auth_url, backend, ISSUER, REDIS_DB, rls_url), repo_plugins())
    gw.conf_extra = {"trusted_ips": "127.0.0.1"}  # X-Real-IP from the test = the client's address (realip)
    auth = start_auth_service(port, env)
    rls = None
    try:
        wait_port(port, seconds=60, proc=auth)
        rls = start_rate_limiting_service(rls_port, rate_limiting_env(env, auth_url, SYNC_INTERVAL))
        wait_port(rls_port, seconds=60, proc=rls)
        gw.start()
        gw.auth_env = env
        yield gw
    finally:
        failures = gw.strict_failures()
        gw.stop()
        for proc in (rls, auth):
            if proc is not None:
                proc.terminate()
                proc.wait(10)
    assert not failures, "\n".join(failures)


def call(stack, method: str, path: str, body=None, token: str | None = None, ip: str | None = "192.0.2.10"):
    """A request from `ip` (X-Real-IP, trusted from 127.0.0.1), or from the test's own address when `ip` is None."""
    headers = {"X-Real-IP": ip} if ip else {}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return requests.request(method, stack.url + "/api/v1" + path, json=body, headers=headers, timeout=15)


def login(stack, email: str, ip: str | None = "192.0.2.10", password: str = PASSWORD) -> requests.Response:
    return call(stack, "POST", "/auth/login", {"email": email, "password": password}, ip=ip)


def new_parent(stack) -> tuple[str, str]:
    email = f"parent-{uuid.uuid4().hex[:10]}@example.com"
    body = {"email": email, "password": PASSWORD, "display_name": "Robin", "time_zone": "Europe/London"}
    assert call(stack, "POST", "/auth/register", body).status_code == 202
    resp = login(stack, email)
    assert resp.status_code == 200, resp.text
    return email, resp.json()["access_token"]


@pytest.fixture(scope="module")
def admin(stack) -> str:
    email = f"admin-{uuid.uuid4().hex[:8]}@example.com"
    env = dict(stack.auth_env, ADMIN_PASSWORD=PASSWORD)
    subprocess.run([sys.executable, "-m", "flask", "create-admin", email], cwd=AUTH_DIR, env=env, check=True,
                   capture_output=True)  # fmt: skip
    resp = login(stack, email, ip="192.0.2.99")
    assert resp.status_code == 200, resp.text
    return resp.json()["access_token"]


def usage_rows(family_id: str) -> list[tuple]:
    conn = psycopg2.connect(host="127.0.0.1", user="postgres", dbname=DATABASE)
    with conn, conn.cursor() as cur:
        cur.execute("SELECT scope, stories_used FROM usage_daily WHERE family_id = %s", (family_id,))
        rows = cur.fetchall()
    conn.close()
    return rows


def test_five_stories_reach_postgresql_on_their_own_and_the_admin_export(stack, admin):
    _, token = new_parent(stack)
    me = call(stack, "GET", "/auth/me", token=token).json()
    family_id = me["family"]["id"]
    for i in range(5):
        resp = call(stack, "POST", "/stories", {"title": f"Tale {i}"}, token=token)
        assert resp.status_code == 201, resp.text
    refused = call(stack, "POST", "/stories", {"title": "one too many"}, token=token)
    assert refused.status_code == 429 and refused.json()["code"] == "quota_exceeded"
    deadline = time.monotonic() + 10 * SYNC_INTERVAL + 20  # the service's own schedule; no command is run
    while ("family", 5) not in usage_rows(family_id) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert ("family", 5) in usage_rows(family_id)
    export = call(stack, "GET", f"/rate-limits/usage?family_id={family_id}", token=admin)
    assert export.status_code == 200, export.text
    assert [(r["scope"], r["stories_used"]) for r in export.json()["rows"]] == [("family", 5)]
    usage = call(stack, "GET", "/auth/usage", token=token)  # the parent's view, same public path as before
    assert usage.status_code == 200, usage.text
    assert usage.json()["family"]["used"] == 5 and usage.json()["family"]["left"] == 0
    assert usage.json()["history"][-1]["stories_used"] == 5
    assert call(stack, "GET", "/rate-limits/usage", token=token).status_code == 403  # parents never export


def test_an_admin_lifts_an_abuse_block_through_the_gateway(stack, admin):
    email, _ = new_parent(stack)
    # The test's own address (127.0.0.1): the log phase strikes the connection's address (log.serialize client_ip)
    ip = None
    # requests without a token on a route whose answers sv-quota-log watches (story creation): each 401 is a strike
    # against the client address, and the 20th inside a minute blocks it (sv-quota's abuse defaults)
    for _ in range(20):
        assert call(stack, "POST", "/stories", {"title": "no token"}, ip=ip).status_code == 401
    listed = call(stack, "GET", "/rate-limits/blocks", token=admin)
    assert listed.status_code == 200, listed.text
    (block,) = [b for b in listed.json()["blocks"] if b["subject"] == "127.0.0.1"]
    assert (block["kind"], block["reason"], block["level"]) == ("ip", "strikes", 1)
    assert login(stack, email, ip=ip).status_code == 429  # even the right password
    lifted = call(stack, "DELETE", f"/rate-limits/blocks/{block['id']}", token=admin)
    assert lifted.status_code == 200 and lifted.json()["lifted"] == 1, lifted.text
    assert [
        b for b in call(stack, "GET", "/rate-limits/blocks", token=admin).json()["blocks"] if b["subject"] == ip
    ] == []
    # plugin servers may answer from their cached block (sv-quota quota_cache_max) and the IP's login rate limit
    # refills at 10/minute: the address signs in again once both have passed
    deadline = time.monotonic() + 90
    while (resp := login(stack, email, ip=ip)).status_code == 429 and time.monotonic() < deadline:
        time.sleep(2)
    assert resp.status_code == 200, resp.text
