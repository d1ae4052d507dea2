"""Issue 20 through the whole layer: the repository's kong.yml rendered for this module's ports, the Kong emulator
with every plugin server (strict mode), the real auth service under gunicorn, PostgreSQL, Redis and the sample
backend. Nothing of ours is mocked; the test plays the billing provider by signing its webhook with the shared secret.
"""

from __future__ import annotations

import json
import time
import uuid

import pytest
import redis
import requests
from authz_support import SmtpSink, link_token
from e2e_support import KongGateway, auth_env, render_kong_yml, repo_plugins, start_auth_service
from kong_emulator.testing import free_port, wait_port

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

REDIS_DB = 12  # this module's auth service and plugins
DATABASE = "storyverse_e2e_families"
ISSUER = "http://families.storyverse.test"
PASSWORD = "a long and quiet bedtime password"
WEBHOOK_SECRET = "whsec-e2e-families-0123456789"


@pytest.fixture(scope="module")
def stack(backend):
    redis.Redis(db=REDIS_DB).flushdb()
    with SmtpSink() as sink:
        port = free_port()
        env = auth_env(DATABASE, REDIS_DB, ISSUER, BILLING_WEBHOOK_SECRETS=WEBHOOK_SECRET,
                       EMAIL_VERIFICATION_REQUIRED="1", MAIL_BACKEND="smtp", SMTP_HOST="127.0.0.1",
                       SMTP_PORT=str(sink.port), SMTP_SECURITY="none")  # fmt: skip
        auth = start_auth_service(port, env)
        gw = KongGateway(render_kong_yml(f"http://127.0.0.1:{port}", backend, ISSUER, REDIS_DB), repo_plugins())
        try:
            wait_port(port, seconds=60, proc=auth)
            gw.start()
            gw.sink = sink
            yield gw
        finally:
            failures = gw.strict_failures()
            gw.stop()
            auth.terminate()
            auth.wait(10)
    assert not failures, "\n".join(failures)


class Parent:
    """A parent's app through the gateway; registers, opens the welcome mail's link (unless told not to), signs in."""

    def __init__(self, stack, verify: bool = True) -> None:
        self.base, self.sink = stack.url + "/api/v1", stack.sink
        self.email = f"parent-{uuid.uuid4().hex[:10]}@example.com"
        body = {"email": self.email, "password": PASSWORD, "display_name": "Robin", "time_zone": "Europe/London"}
        assert self.call("POST", "/auth/register", body).status_code == 202
        if verify:
            self.verify()
        self.take(self.call("POST", "/auth/login", {"email": self.email, "password": PASSWORD}))

    def verify(self) -> None:
        token = link_token(self.sink.wait_for(self.email))
        assert self.call("POST", "/auth/email/verify", {"token": token}).status_code == 204

    def create_child(self, username: str = "ada") -> requests.Response:
        body = {"display_name": "Ada", "username": username, "birth_year": 2018,
                "controls": {"allowed_hours": "00:00-24:00"}}  # fmt: skip
        return self.call("POST", "/auth/children", body)

    def call(self, method: str, path: str, body=None, **kw) -> requests.Response:
        headers = kw.pop("headers", {})
        if getattr(self, "access", None):
            headers.setdefault("Authorization", f"Bearer {self.access}")
        return requests.request(method, self.base + path, json=body, headers=headers, timeout=15, **kw)

    def take(self, response: requests.Response) -> None:
        assert response.status_code == 200, response.text
        self.access, self.refresh = response.json()["access_token"], response.json()["refresh_token"]

    def stories(self, n: int) -> list[int]:
        answers = [self.call("POST", "/stories", {"title": "The Sleepy Dragon"}) for _ in range(n)]
        self.last = next((a for a in answers if a.status_code == 429), answers[-1])
        return [a.status_code for a in answers]


def _webhook(stack, body: dict, timestamp: int | None = None) -> requests.Response:
    from storyverse_auth.billing import signature

    raw = json.dumps(body).encode()
    header = signature.sign(WEBHOOK_SECRET, int(time.time()) if timestamp is None else timestamp, raw)
    return requests.post(
        stack.url + "/api/v1/auth/billing/webhook",
        data=raw,
        headers={"Billing-Signature": header, "Content-Type": "application/json"},
        timeout=15,
    )


def _refused_soon(send, seconds: float = 5.0) -> requests.Response:
    """sv-jwt reuses a denylist answer for up to its cache ttl (~1 s): a revocation shows within that."""
    deadline = time.monotonic() + seconds
    while True:
        response = send()
        if response.status_code == 401 or time.monotonic() > deadline:
            assert response.status_code == 401, response.text
            return response
        time.sleep(0.25)


def test_basic_family_at_5_upgrades_to_20_the_same_day(stack):
    parent = Parent(stack)
    assert parent.stories(6) == [201] * 5 + [429]
    asked = parent.call("POST", "/auth/family/plan", {"plan": "premium"})
    assert asked.status_code == 202 and asked.json()["status"] == "checkout_required", asked.text
    family_id = parent.call("GET", "/auth/me").json()["family"]["id"]
    event = {
        "id": f"evt_{uuid.uuid4().hex}",
        "type": "subscription.activated",
        "created": int(time.time()),
        "data": {"family_id": family_id, "subscription_id": "sub_e2e", "plan": "premium"},
    }
    applied = _webhook(stack, event)
    assert applied.status_code == 200 and applied.json() == {"status": "applied"}, applied.text
    assert _webhook(stack, event).json() == {"status": "duplicate"}  # a replay through the gateway: no effect
    # The old token still says basic: the family stays at its basic limit until the next refresh.
    assert parent.stories(1) == [429]
    parent.take(parent.call("POST", "/auth/refresh", {"refresh_token": parent.refresh}))
    # Same day: the 5 stories already made count against premium's 20.
    assert parent.stories(16) == [201] * 15 + [429], parent.last.text
    plan = parent.call("GET", "/auth/family/plan").json()
    assert plan["plan"] == "premium" and plan["subscription"]["status"] == "active"


def test_the_webhook_refuses_bad_signatures_at_the_service_and_plan_routes_need_a_parent(stack):
    parent = Parent(stack)
    family_id = parent.call("GET", "/auth/me").json()["family"]["id"]
    event = {
        "id": f"evt_{uuid.uuid4().hex}",
        "type": "subscription.activated",
        "created": int(time.time()),
        "data": {"family_id": family_id, "subscription_id": "sub_x", "plan": "premium"},
    }
    stale = _webhook(stack, event, timestamp=int(time.time()) - 3600)
    assert stale.status_code == 400 and stale.json()["code"] == "invalid_signature"
    unsigned = requests.post(stack.url + "/api/v1/auth/billing/webhook", json=event, timeout=15)
    assert unsigned.status_code == 400 and unsigned.headers["Content-Type"].startswith("application/problem+json")
    assert parent.call("GET", "/auth/family/plan").json()["plan"] == "basic"
    anonymous = requests.get(stack.url + "/api/v1/auth/family/plan", timeout=15)
    assert anonymous.status_code == 401


def test_an_unverified_parent_verifies_through_the_gateway_before_adding_a_child(stack):
    parent = Parent(stack, verify=False)
    refused = parent.create_child()
    assert refused.status_code == 403 and refused.json()["code"] == "email_unverified", refused.text
    token = link_token(stack.sink.wait_for(parent.email))
    assert parent.call("POST", "/auth/email/verify", {"token": token}).status_code == 204
    again = parent.call("POST", "/auth/email/verify", {"token": token})
    assert again.status_code == 400 and again.json()["code"] == "invalid_verification_token"  # single use
    assert parent.create_child().status_code == 201
    resend = parent.call("POST", "/auth/email/verification")
    assert resend.status_code == 409 and resend.json()["code"] == "email_already_verified"


def test_parent_mfa_step_up_through_the_gateway(stack):
    import jwt
    import pyotp

    parent = Parent(stack)
    begun = parent.call("POST", "/auth/mfa/totp", {"password": PASSWORD})
    assert begun.status_code == 201, begun.text
    totp = pyotp.TOTP(begun.json()["secret"])
    confirmed = parent.call("POST", "/auth/mfa/totp/confirm", {"code": totp.now()})
    assert confirmed.status_code == 200 and len(confirmed.json()["recovery_codes"]) == 10
    # a new sign-in is password only: the plan change asks for the second factor (RFC 9470 challenge)
    parent.take(parent.call("POST", "/auth/login", {"email": parent.email, "password": PASSWORD}))
    assert jwt.decode(parent.access, options={"verify_signature": False})["amr"] == ["pwd"]
    refused = parent.call("POST", "/auth/family/plan", {"plan": "premium"})
    assert refused.status_code == 401 and refused.json()["code"] == "mfa_required", refused.text
    assert "insufficient_user_authentication" in refused.headers["WWW-Authenticate"]
    recovery = confirmed.json()["recovery_codes"][0]  # the TOTP step of the confirm is spent: use a recovery code
    stepped = parent.call("POST", "/auth/mfa/verify", {"recovery_code": recovery})
    assert stepped.status_code == 200, stepped.text
    parent.access = stepped.json()["caller_token"]["access_token"]
    assert jwt.decode(parent.access, options={"verify_signature": False})["amr"] == ["pwd", "otp", "mfa"]
    assert parent.call("POST", "/auth/family/plan", {"plan": "premium"}).status_code == 202
    assert parent.call("POST", "/auth/mfa/verify", {"recovery_code": recovery}).status_code == 401  # used up


def test_consent_withdrawal_and_account_deletion_revoke_at_the_gateway(stack):
    parent = Parent(stack)
    body = {"display_name": "Ada", "username": "ada", "birth_year": 2018, "pin": "7351",
            "controls": {"allowed_hours": "00:00-24:00"}}  # fmt: skip
    created = parent.call("POST", "/auth/children", body)
    assert created.status_code == 201, created.text
    child_id = created.json()["id"]
    parent.access = created.json()["caller_token"]["access_token"]
    consent = {"policy_version": "2026-04-22", "agreed": ["profile"], "password": PASSWORD}
    assert parent.call("POST", f"/auth/children/{child_id}/consent", consent).status_code == 201
    code = parent.call("GET", "/auth/family").json()["family_code"]
    login = {"family_code": code, "username": "ada", "pin": "7351"}
    child = requests.post(stack.url + "/api/v1/auth/child/login", json=login, timeout=15).json()
    child_headers = {"Authorization": f"Bearer {child['access_token']}"}
    assert requests.get(stack.url + "/api/v1/stories", headers=child_headers, timeout=15).status_code == 200

    assert parent.call("DELETE", f"/auth/children/{child_id}/consent").status_code == 204
    # sv-jwt: the child's session is denylisted (the gateway says invalid_token for any refused token)
    _refused_soon(lambda: requests.get(stack.url + "/api/v1/stories", headers=child_headers, timeout=15))
    again = requests.post(stack.url + "/api/v1/auth/child/login", json=login, timeout=15)
    assert again.status_code == 403 and again.json()["code"] == "profile_inactive"

    export = parent.call("GET", "/auth/account/export")
    assert export.status_code == 200 and export.json()["family"]["children"][0]["consents"][-1]["method"] == "withdrawn"
    deletion = parent.call("POST", "/auth/account/deletion", {"password": PASSWORD})
    assert deletion.status_code == 202 and deletion.json()["family_deleted"] is True
    assert _refused_soon(lambda: parent.call("GET", "/stories")).status_code == 401  # the parent's token dies
