"""API keys through the gateway (issue 15 item 5): a partner integration's journey, end to end.

Before: `/api/v1/auth/api-keys*` had no route (Kong's 404) and kong.yml configured no partner plans, so a key's token
(`tier` = its plan) was metered as `basic`: 5 generations a day. Now: a parent issues a key, exchanges it for an
access token, and generates with the family's limits, then, once an administrator grants the key a partner plan, with
that plan's (storyverse_gateway_config.routes `PLANS`).

The stack is the repository's kong.yml rendered for this module's ports (nothing else changed), the Kong emulator with
every plugin server (strict mode), the real auth service under gunicorn, PostgreSQL, Redis and the sample backend.
Who may take which plan is the auth service's decision (apikeys/service.py): a parent's key is a `family` key, metered
by the family's own plan (its token's `tier` is the family's), and only an administrator puts a key on a partner plan
(`PUT /api/v1/auth/admin/api-keys/{key_id}/plan`; the admin is made with `flask create-admin`, as in the
authorization matrix).
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid

import jwt
import pytest
import redis
import requests
import yaml
from e2e_support import AUTH_DIR, KongGateway, auth_env, repo_plugins, start_auth_service
from kong_emulator.testing import free_port, wait_port

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

REDIS_DB = 13
DATABASE = "storyverse_e2e_apikeys"
ISSUER = "http://apikeys.storyverse.test"
PASSWORD = "a long and quiet bedtime password"


def _render_kong_yml(auth_url: str, backends: dict[str, str]) -> str:
    import storyverse_gateway_config as gateway_config

    settings = gateway_config.load_settings(
        overrides={
            "services": {"auth": auth_url, **backends},
            "jwt": {"jwks_url": auth_url + "/.well-known/jwks.json", "issuer": ISSUER, "audience": "storyverse-api"},
            "redis": {"redis_host": "127.0.0.1", "redis_port": 6379, "redis_database": REDIS_DB},
        }
    )
    return yaml.safe_dump(yaml.safe_load(gateway_config.render(settings)), sort_keys=False)


@pytest.fixture(scope="module")
def gw(backend):
    redis.Redis(db=REDIS_DB).flushdb()
    port = free_port()
    env = auth_env(DATABASE, REDIS_DB, ISSUER)
    gateway = KongGateway(_render_kong_yml(f"http://127.0.0.1:{port}", backend), repo_plugins())
    gateway.conf_extra = {"trusted_ips": "127.0.0.1"}
    auth = start_auth_service(port, env)
    try:
        wait_port(port, seconds=60, proc=auth)
        gateway.start()
        yield gateway
    finally:
        failures = gateway.strict_failures()
        gateway.stop()
        auth.terminate()
        auth.wait(10)
    assert not failures, "\n".join(failures)


def _call(gw, method: str, path: str, body=None, auth: str | None = None) -> requests.Response:
    headers = {"X-Real-IP": "198.51.100.77"}
    if auth:
        headers["Authorization"] = auth
    return requests.request(method, gw.url + path, json=body, headers=headers, timeout=30)


def _login(gw, email: str) -> str:
    login = _call(gw, "POST", "/api/v1/auth/login", {"email": email, "password": PASSWORD})
    assert login.status_code == 200, login.text
    return f"Bearer {login.json()['access_token']}"


def _admin(gw) -> str:
    email = f"admin-{uuid.uuid4().hex[:8]}@example.com"
    env = dict(auth_env(DATABASE, REDIS_DB, ISSUER), ADMIN_PASSWORD=PASSWORD)
    subprocess.run([sys.executable, "-m", "flask", "create-admin", email], cwd=AUTH_DIR, env=env, check=True,
                   capture_output=True)  # fmt: skip
    return _login(gw, email)


def _exchange(gw, key: str) -> tuple[str, dict]:
    resp = _call(gw, "POST", "/api/v1/auth/api-keys/token", {}, f"ApiKey {key}")
    assert resp.status_code == 200, resp.text
    token = resp.json()["access_token"]
    return f"Bearer {token}", jwt.decode(token, options={"verify_signature": False})


def test_create_key_exchange_and_generate_on_partner_plans(gw):
    email = f"partner-{uuid.uuid4().hex[:8]}@example.com"
    body = {"email": email, "password": PASSWORD, "display_name": "Pat", "time_zone": "Europe/London"}
    assert _call(gw, "POST", "/api/v1/auth/register", body).status_code == 202
    parent = _login(gw, email)

    # the auth service decides the plans: a parent may take no partner plan, only its family's own
    asked = {"name": "bedtime partner", "scopes": ["stories:read", "stories:generate"]}
    for plan in ("partner-premium", "partner-basic"):
        refused = _call(gw, "POST", "/api/v1/auth/api-keys", {**asked, "plan": plan}, parent)
        assert (refused.status_code, refused.json()["code"]) == (403, "plan_not_allowed"), refused.text
    created = _call(gw, "POST", "/api/v1/auth/api-keys", asked, parent)
    assert created.status_code == 201, created.text
    assert created.json()["plan"] == "family"
    key, key_id = created.json()["key"], created.json()["id"]
    listed = _call(gw, "GET", "/api/v1/auth/api-keys", None, parent).json()["api_keys"]
    assert [k["id"] for k in listed] == [key_id] and "key" not in listed[0]

    # a family key: metered as the family is (basic: 5 a day), on the family's counter
    token, claims = _exchange(gw, key)
    assert (claims["tier"], claims["plan"], claims["role"], claims["sid"]) == ("basic", "family", "parent", key_id)
    first = _call(gw, "POST", "/api/v1/generate/text", {"prompt": "a sleepy fox"}, token)
    assert first.status_code == 201, first.text
    assert first.headers["X-Quota-Limit"] == "5" and first.headers["X-Quota-Remaining"] == "4"
    assert first.json()["received_identity"]["X-Account-Tier"] == "basic"

    # only an administrator moves the key to partner-premium; a fresh exchange carries the new plan
    plan_path = f"/api/v1/auth/admin/api-keys/{key_id}/plan"
    assert _call(gw, "PUT", plan_path, {"plan": "partner-premium"}, parent).status_code == 403
    granted = _call(gw, "PUT", plan_path, {"plan": "partner-premium"}, _admin(gw))
    assert granted.status_code == 200, granted.text
    assert (granted.json()["id"], granted.json()["plan"]) == (key_id, "partner-premium")
    token, claims = _exchange(gw, key)
    assert claims["tier"] == "partner-premium"
    answers = [_call(gw, "POST", "/api/v1/generate/text", {"prompt": f"owl {n}"}, token) for n in range(25)]
    assert [a.status_code for a in answers] == [201] * 25, [a.text for a in answers if a.status_code != 201][:2]
    for n, resp in enumerate(answers):
        # one family counter (the key's family), the plan's daily limit; the burst above generation's 10/minute
        assert resp.headers["X-Quota-Limit"] == "1000"
        assert resp.headers["X-Quota-Remaining"] == str(1000 - 2 - n)
        assert "RateLimit" in resp.headers and "Retry-After" not in resp.headers
        assert resp.json()["received_identity"]["X-Account-Tier"] == "partner-premium"
    # 26 generations in a few seconds on a 10/minute policy: the plan's burst of 20 (capacity 30) carried them
    assert answers[-1].headers["RateLimit-Policy"] == '"generate-minute";q=10;w=60'
    assert answers[-1].headers["RateLimit"].startswith('"generate-minute";r=')

    # revoking the key refuses its outstanding tokens at the edge, and the key itself at the exchange
    assert _call(gw, "DELETE", f"/api/v1/auth/api-keys/{key_id}", None, parent).status_code == 204
    deadline = time.monotonic() + 5  # sv-jwt caches a denylist answer for up to denylist_cache_ms (<= 1 s)
    while (status := _call(gw, "GET", "/api/v1/stories", None, token).status_code) != 401:
        assert status == 200 and time.monotonic() < deadline, status
        time.sleep(0.2)
    assert _call(gw, "POST", "/api/v1/auth/api-keys/token", {}, f"ApiKey {key}").status_code == 401


def test_the_exchange_refuses_a_forged_key_and_children_cannot_manage_keys(gw):
    forged = f"ApiKey svk_{uuid.uuid4().hex}_{'x' * 43}"
    resp = _call(gw, "POST", "/api/v1/auth/api-keys/token", {}, forged)
    assert resp.status_code == 401 and resp.headers["Content-Type"].startswith("application/problem+json")
    assert _call(gw, "GET", "/api/v1/auth/api-keys").status_code == 401  # no token: the gateway's 401
