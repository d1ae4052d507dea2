"""Plans through the real auth service: the parent's plan endpoints and the signed billing webhook (issue 20)."""

from __future__ import annotations

import json
import uuid

import pytest
from auth_support import assert_problem
from storyverse_auth.billing import signature

SECRET = "whsec-test-0123456789abcdef"


@pytest.fixture
def app(app):
    app.config.update(BILLING_WEBHOOK_SECRETS=f"{SECRET},whsec-previous", BILLING_WEBHOOK_TOLERANCE=300)
    return app


class Billing:
    def __init__(self, client, clock) -> None:
        self.client, self.clock = client, clock

    def event(self, family_id: str, kind: str = "activated", sub: str = "sub_1", **over) -> dict:
        body = {
            "id": over.pop("id", f"evt_{uuid.uuid4().hex}"),
            "type": f"subscription.{kind}",
            "created": over.pop("created", int(self.clock())),
            "data": {"family_id": family_id, "subscription_id": sub, "plan": "premium"},
        }
        body.update(over)
        return body

    def send(self, body: dict, secret: str = SECRET, timestamp: int | None = None, header: str | None = None):
        raw = json.dumps(body).encode()
        ts = int(self.clock()) if timestamp is None else timestamp
        sig = signature.sign(secret, ts, raw) if header is None else header
        return self.client.post(
            "/api/auth/billing/webhook",
            data=raw,
            headers={"Billing-Signature": sig, "Content-Type": "application/json"},
        )


@pytest.fixture
def billing(client, clock) -> Billing:
    return Billing(client, clock)


def _family_id(client, tokens) -> str:
    return client.get("/api/auth/me", headers={"Authorization": f"Bearer {tokens['access_token']}"}).get_json()[
        "family"
    ]["id"]


def test_upgrade_is_a_checkout_then_the_signed_event_sets_the_tier_seen_at_the_next_refresh(client, auth, billing):
    tokens = auth.tokens()
    headers = auth.bearer(tokens)
    plan = client.get("/api/auth/family/plan", headers=headers).get_json()
    assert plan["plan"] == "basic" and plan["daily_story_limit"] == 5 and plan["subscription"] is None
    asked = client.post("/api/auth/family/plan", json={"plan": "premium"}, headers=headers)
    assert asked.status_code == 202
    family_id = _family_id(client, tokens)
    assert asked.get_json()["status"] == "checkout_required" and family_id in asked.get_json()["url"]
    assert client.get("/api/auth/family/plan", headers=headers).get_json()["plan"] == "basic"  # not paid yet

    assert billing.send(billing.event(family_id)).get_json() == {"status": "applied"}
    plan = client.get("/api/auth/family/plan", headers=headers).get_json()
    assert plan["plan"] == "premium" and plan["daily_story_limit"] == 20
    assert plan["subscription"]["status"] == "active"
    refreshed = client.post("/api/auth/refresh", json={"refresh_token": tokens["refresh_token"]}).get_json()
    assert client.get("/api/auth/me", headers=auth.bearer(refreshed)).get_json()["family"]["tier"] == "premium"
    import jwt

    assert jwt.decode(refreshed["access_token"], options={"verify_signature": False})["tier"] == "premium"


def test_cancel_returns_to_basic_and_only_for_the_current_subscription(client, auth, billing):
    tokens = auth.tokens()
    family_id = _family_id(client, tokens)
    billing.send(billing.event(family_id, sub="sub_new"))
    assert billing.send(billing.event(family_id, "canceled", sub="sub_old")).get_json() == {"status": "ignored"}
    plan = client.get("/api/auth/family/plan", headers=auth.bearer(tokens)).get_json()
    assert plan["plan"] == "premium"
    asked = client.post("/api/auth/family/plan", json={"plan": "basic"}, headers=auth.bearer(tokens))
    assert asked.status_code == 202 and asked.get_json()["status"] == "cancellation_required"
    assert billing.send(billing.event(family_id, "canceled", sub="sub_new")).get_json() == {"status": "applied"}
    plan = client.get("/api/auth/family/plan", headers=auth.bearer(tokens)).get_json()
    assert plan["plan"] == "basic" and plan["subscription"]["status"] == "canceled"


def test_a_redelivered_or_replayed_event_is_applied_once(client, auth, billing):
    tokens = auth.tokens()
    family_id = _family_id(client, tokens)
    activated = billing.event(family_id)
    assert billing.send(activated).get_json() == {"status": "applied"}
    billing.send(billing.event(family_id, "canceled"))
    # The same signed activation again (a provider retry or an attacker's replay) changes nothing.
    assert billing.send(activated).get_json() == {"status": "duplicate"}
    assert client.get("/api/auth/family/plan", headers=auth.bearer(tokens)).get_json()["plan"] == "basic"


def test_an_older_event_arriving_late_is_stale(client, auth, billing, clock):
    tokens = auth.tokens()
    family_id = _family_id(client, tokens)
    billing.send(billing.event(family_id, "canceled"))  # no subscription yet: ignored, nothing applied
    billing.send(billing.event(family_id))
    late = billing.event(family_id, "canceled", created=int(clock()) - 60)
    assert billing.send(late).get_json() == {"status": "stale"}
    assert client.get("/api/auth/family/plan", headers=auth.bearer(tokens)).get_json()["plan"] == "premium"


def test_signatures_refused_when_wrong_stale_malformed_or_unconfigured(app, client, auth, billing, clock):
    family_id = _family_id(client, auth.tokens())
    body = billing.event(family_id)
    assert_problem(billing.send(body, secret="not-the-secret"), 400, "invalid_signature")
    assert_problem(billing.send(body, timestamp=int(clock()) - 301), 400, "invalid_signature")
    assert_problem(billing.send(body, timestamp=int(clock()) + 301), 400, "invalid_signature")
    assert_problem(billing.send(body, header="t=abc,v1=zz"), 400, "invalid_signature")
    assert_problem(billing.send(body, header=""), 400, "invalid_signature")
    # non-ASCII in the header (latin-1 on the wire): was a 500, hmac.compare_digest raises on a non-ASCII str
    latin = "\u00e9" * 64
    assert_problem(billing.send(body, header=f"t={int(clock())},v1={latin}"), 400, "invalid_signature")
    # a body changed after signing
    raw = json.dumps(body).encode()
    sig = signature.sign(SECRET, int(clock()), raw)
    tampered = json.dumps({**body, "data": {**body["data"], "plan": "premium", "subscription_id": "sub_x"}})
    response = client.post(
        "/api/auth/billing/webhook",
        data=tampered,
        headers={"Billing-Signature": sig, "Content-Type": "application/json"},
    )
    assert_problem(response, 400, "invalid_signature")
    # the previous secret still verifies during a rotation
    assert billing.send(body, secret="whsec-previous").get_json() == {"status": "applied"}
    app.config["BILLING_WEBHOOK_SECRETS"] = ""
    assert_problem(billing.send(billing.event(family_id)), 503, "billing_unconfigured")


def test_unknown_types_and_families_are_recorded_and_ignored(client, auth, billing):
    family_id = _family_id(client, auth.tokens())
    assert billing.send(billing.event(str(uuid.uuid4()))).get_json() == {"status": "ignored"}
    assert billing.send(billing.event(family_id, type="invoice.paid")).get_json() == {"status": "ignored"}
    bad = billing.event(family_id)
    bad["data"]["plan"] = "platinum"
    assert_problem(billing.send(bad), 422, "validation_failed")


def test_plan_endpoints_are_for_parents_of_the_family_only(client, auth, billing):
    tokens = auth.tokens()
    assert_problem(
        client.post("/api/auth/family/plan", json={"plan": "basic"}, headers=auth.bearer(tokens)), 409, "plan_unchanged"
    )
    assert_problem(client.get("/api/auth/family/plan"), 401, "invalid_token")
    child_parent = auth.tokens("other@example.com")
    family_b = _family_id(client, child_parent)
    billing.send(billing.event(family_b))
    # family A's view is untouched by family B's upgrade
    assert client.get("/api/auth/family/plan", headers=auth.bearer(tokens)).get_json()["plan"] == "basic"


def test_a_child_cannot_read_or_change_the_plan(client, family):
    tokens = family.parent()
    _, child = family.active_child(tokens)
    headers = family.headers(child)
    assert_problem(client.get("/api/auth/family/plan", headers=headers), 403, "parent_only")
    assert_problem(client.post("/api/auth/family/plan", json={"plan": "premium"}, headers=headers), 403, "parent_only")
