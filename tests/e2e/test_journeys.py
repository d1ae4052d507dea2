"""Journeys through the whole layer as users meet it: the repository's kong.yml (rendered for this test's ports),
the Kong emulator with every plugin server, the real auth service under gunicorn, Redis, PostgreSQL and the
sample backend. Nothing of ours is mocked.

A parent registers, logs in, creates a child, consents, signs the child in on a device; the child lists universes
and characters and creates stories until the daily quota answers 429; the parent reads usage, tightens controls
and ends the child's sessions; the child's next request is refused; refresh-token reuse kills a session; a forged
token never reaches a backend; a premium family gets 20 stories.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
import uuid

import psycopg2
import pytest
import redis
import requests
from e2e_support import (
    REPO,
    KongGateway,
    auth_env,
    rate_limiting_env,
    render_kong_yml,
    repo_plugins,
    start_auth_service,
    start_rate_limiting_service,
)
from kong_emulator.testing import free_port, wait_port

REDIS_DB = 3  # shared by the auth service (revocations) and the plugins (denylist, quotas) in this module
DATABASE = "storyverse_journeys"
PASSWORD = "a long and quiet bedtime password"


@pytest.fixture(scope="module")
def stack(backend):
    """The whole layer; yields an object with `.url` (the proxy) and `.auth_env` (for the auth CLI)."""
    redis.Redis(db=REDIS_DB).flushdb()
    port, rls_port = free_port(), free_port()
    issuer = "http://journeys.storyverse.test"
    env = auth_env(DATABASE, REDIS_DB, issuer, DEVICE_POLL_INTERVAL="1")
    auth = start_auth_service(port, env)
    auth_url, rls_url = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{rls_port}"
    gw = KongGateway(render_kong_yml(auth_url, backend, issuer, REDIS_DB, rls_url), repo_plugins())
    rls = None
    try:
        wait_port(port, seconds=60, proc=auth)
        rls = start_rate_limiting_service(rls_port, rate_limiting_env(env, auth_url))
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


class Client:
    """One user's app: remembers its tokens and sends them."""

    def __init__(self, base: str) -> None:
        self.base = base + "/api/v1"
        self.access: str | None = None
        self.refresh: str | None = None

    def call(self, method: str, path: str, json_body=None, token: str | None = None, **kw) -> requests.Response:
        headers = kw.pop("headers", {})
        bearer = token or self.access
        if bearer:
            headers["Authorization"] = f"Bearer {bearer}"
        return requests.request(method, self.base + path, json=json_body, headers=headers, timeout=15, **kw)

    def take(self, resp: requests.Response) -> dict:
        assert resp.status_code == 200, resp.text
        body = resp.json()
        self.access, self.refresh = body["access_token"], body.get("refresh_token", self.refresh)
        return body


def new_parent(stack, time_zone: str = "Europe/London") -> Client:
    parent = Client(stack.url)
    email = f"parent-{uuid.uuid4().hex[:10]}@example.com"
    body = {"email": email, "password": PASSWORD, "display_name": "Robin", "time_zone": time_zone}
    assert parent.call("POST", "/auth/register", body).status_code == 202
    login = parent.call("POST", "/auth/login", {"email": email, "password": PASSWORD})
    assert login.status_code == 200, login.text
    parent.take(login)
    parent.email = email
    return parent


def new_child(stack, parent: Client, username: str, daily: int | None = None) -> tuple[str, Client]:
    """Create, consent and sign in a child on a device (RFC 8628: the tablet polls, the parent approves)."""
    controls = {"allowed_hours": "00:00-24:00", "features": ["text", "image"]}  # the test runs at any hour
    if daily is not None:
        controls["daily_story_limit"] = daily
    created = parent.call(
        "POST",
        "/auth/children",
        {"display_name": "Ada", "username": username, "birth_year": 2018, "controls": controls},
    )
    assert created.status_code == 201, created.text
    child_id = created.json()["id"]
    parent.access = created.json()["caller_token"]["access_token"]  # the parent's token now lists the child
    consent = parent.call(
        "POST", f"/auth/children/{child_id}/consent", {"policy_version": "2026-04-22", "agreed": ["profile"],
                                                       "password": PASSWORD},
    )  # fmt: skip
    assert consent.status_code == 201, consent.text
    tablet = Client(stack.url)
    code = tablet.call("POST", "/auth/device/code", {})
    assert code.status_code == 200, code.text
    pending = tablet.call("POST", "/auth/device/token", {"device_code": code.json()["device_code"]})
    assert pending.status_code == 400 and pending.json()["code"] == "authorization_pending"
    approved = parent.call(
        "POST", "/auth/device/approve", {"user_code": code.json()["user_code"], "child_id": child_id}
    )
    assert approved.status_code == 204, approved.text
    time.sleep(code.json()["interval"])  # a well-behaved device waits `interval` between polls (else slow_down)
    tablet.take(tablet.call("POST", "/auth/device/token", {"device_code": code.json()["device_code"]}))
    return child_id, tablet


def eventually(check, seconds: float = 3.0) -> bool:
    """sv-jwt may reuse a denylist answer for up to 1 s (docs/architecture.md §4: revocation within ~1 s)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return check()


def claims(token: str) -> dict:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def test_a_family_evening(stack):
    parent = new_parent(stack)
    child_id, child = new_child(stack, parent, "ada")
    assert claims(child.access)["role"] == "child" and claims(child.access)["sub"] == child_id

    # the child browses: universes and characters, with identity set by the gateway, never by the client
    for path in ("/universes", "/characters"):
        resp = child.call("GET", path, headers={"X-User-Id": "someone-else", "X-User-Role": "admin"})
        assert resp.status_code == 200, resp.text
        assert resp.json()["received_identity"]["X-User-Id"] == child_id
        assert resp.json()["received_identity"]["X-User-Role"] == "child"
    # a child may not create universes (parents only) and never reaches account management
    assert child.call("POST", "/universes", {"name": "Moonland"}).status_code == 403
    assert child.call("GET", "/auth/children").status_code == 403

    # stories until the daily quota (basic: 5) answers 429, with headers an app can show
    for n in range(5):
        made = child.call("POST", "/stories", {"title": f"Story {n}"})
        assert made.status_code == 201, made.text
        assert made.headers["X-Quota-Remaining"] == str(4 - n)
    refused = child.call("POST", "/stories", {"title": "One more"})
    assert refused.status_code == 429
    assert refused.headers["Content-Type"].startswith("application/problem+json")
    assert refused.json()["code"] == "quota_exceeded" and "Retry-After" in refused.headers
    assert len(child.call("GET", "/stories").json()["items"]) == 5  # the refused one never reached the backend

    # the parent reads the family's usage: the family pool and the child are used up for tonight
    usage = parent.call("GET", "/auth/usage")
    assert usage.status_code == 200, usage.text
    assert usage.json()["family"]["used"] == 5 and usage.json()["family"]["left"] == 0
    (ada,) = [c for c in usage.json()["children"] if c["id"] == child_id]
    assert ada["used"] == 5 and ada["left"] == 0
    assert child.call("GET", "/auth/usage").status_code == 403  # children never see account data

    # the parent tightens controls and ends the child's sessions; the child's next request is refused
    tightened = parent.call("PATCH", f"/auth/children/{child_id}", {"controls": {"features": ["text"]}})
    assert tightened.status_code == 200, tightened.text
    assert parent.call("DELETE", f"/auth/children/{child_id}/sessions").status_code == 204
    assert eventually(lambda: child.call("GET", "/stories").status_code == 401)
    assert child.call("POST", "/auth/refresh", {"refresh_token": child.refresh}).status_code == 401


def test_refresh_token_reuse_kills_the_session(stack):
    parent = new_parent(stack)
    stolen = parent.refresh
    rotated = parent.call("POST", "/auth/refresh", {"refresh_token": stolen}, token="")
    assert rotated.status_code == 200
    parent.take(rotated)
    # outside the grace window a replay would be reuse; inside it the same successor comes back (two tabs) —
    # rotate once more so the stolen token is two generations old: that is reuse, whatever the clock says
    parent.take(parent.call("POST", "/auth/refresh", {"refresh_token": parent.refresh}, token=""))
    replay = parent.call("POST", "/auth/refresh", {"refresh_token": stolen}, token="")
    assert replay.status_code == 401 and replay.json()["code"] == "refresh_token_reused"
    # the whole session is dead: the newest refresh token and the access token with it
    assert parent.call("POST", "/auth/refresh", {"refresh_token": parent.refresh}, token="").status_code == 401
    assert eventually(lambda: parent.call("GET", "/stories").status_code == 401)


def test_a_forged_token_never_reaches_a_backend(stack, backend):
    parent = new_parent(stack)
    header, payload, signature = parent.access.split(".")
    forged_claims = claims(parent.access) | {"role": "admin", "family_id": "someone-elses"}
    forged_payload = base64.urlsafe_b64encode(json.dumps(forged_claims).encode()).rstrip(b"=").decode()
    for token in (f"{header}.{forged_payload}.{signature}", f"{header}.{payload}.", "not-a-token"):
        resp = parent.call("POST", "/stories", {"title": "forged"}, token=token)
        assert resp.status_code == 401
        assert resp.headers["Content-Type"].startswith("application/problem+json")
    # nothing was stored for this parent's family at the backend (asked as the gateway would: docs/backend-contract.md)
    mine = claims(parent.access)
    who = {"X-User-Id": mine["sub"], "X-User-Role": "parent", "X-Family-Id": mine["family_id"]}
    listed = requests.get(backend["stories"] + "/api/stories", headers=who, timeout=10)
    assert listed.status_code == 200 and listed.json()["items"] == []


def test_a_premium_family_gets_twenty_stories(stack):
    parent = new_parent(stack)
    family_id = claims(parent.access)["family_id"]
    _set_tier(family_id, "premium")  # the billing webhook's job (test_families_e2e.py goes through it)
    parent.take(parent.call("POST", "/auth/refresh", {"refresh_token": parent.refresh}, token=""))
    assert claims(parent.access)["tier"] == "premium"
    codes = [parent.call("POST", "/stories", {"title": f"Tale {n}"}).status_code for n in range(21)]
    assert codes == [201] * 20 + [429]


def _set_tier(family_id: str, tier: str) -> None:
    conn = psycopg2.connect(host="127.0.0.1", user="postgres", dbname=DATABASE)
    with conn, conn.cursor() as cur:
        cur.execute("UPDATE families SET tier = %s WHERE id = %s", (tier, family_id))
    conn.close()


def test_the_auth_cli_runs_against_the_same_database(stack):
    """`flask keys list` works with the stack's environment (operators rotate keys with the same CLI)."""
    out = subprocess.run(
        [sys.executable, "-m", "flask", "keys", "list"], cwd=REPO / "auth-service", env=stack.auth_env,
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert "active" in out.stdout
