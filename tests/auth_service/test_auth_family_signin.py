"""Child sign-in without e-mail: the consent gate, PIN throttling, and the RFC 8628 device grant (approved, denied,
expired, polled too fast, single use)."""

import re
from urllib.parse import quote

import jwt
import pytest
from auth_support import assert_problem

USER_CODE = re.compile(r"\A[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}\Z")


def test_consent_gate(client, family):
    parent = family.parent()
    child = family.create_child(parent).get_json()
    code = family.family_code(parent)
    assert_problem(family.child_login(code, pin="97531"), 401, "invalid_credentials")  # wrong PIN: nothing told
    assert_problem(family.child_login(code), 403, "profile_inactive")  # right PIN, no consent: no session
    listed = client.get(f"/api/auth/children/{child['id']}/sessions", headers=family.headers(parent))
    assert listed.get_json()["sessions"] == []
    assert family.consent(parent, child["id"]).status_code == 201
    response = family.child_login(code)
    assert response.status_code == 200
    body = response.get_json()
    assert set(body) == {"access_token", "token_type", "expires_in", "refresh_token", "session_id"}
    assert jwt.decode(body["access_token"], options={"verify_signature": False})["role"] == "child"


def test_family_code_is_forgiving_about_case_and_dashes(family):
    parent = family.parent()
    family.active_child(parent)
    code = family.family_code(parent)
    assert family.child_login(f"{code[:5]}-{code[5:]}".lower(), "ROBIN").status_code == 200


def test_unknown_family_username_or_missing_pin_look_the_same(client, family):
    parent = family.parent()
    child = family.create_child(parent, "sam", pin=None)
    assert child.status_code == 422  # pin, when given, must be digits
    nopin = client.post(
        "/api/auth/children",
        json={"display_name": "Sam", "username": "sam", "birth_year": family.child_birth_year},
        headers=family.headers(parent),
    ).get_json()
    assert nopin["has_pin"] is False
    family.consent(parent, nopin["id"])
    code = family.family_code(parent)
    for attempt in (
        family.child_login("ZZZZZZZZZZ"),
        family.child_login(code, "nobody"),
        family.child_login(code, "sam"),
    ):
        assert_problem(attempt, 401, "invalid_credentials")


def test_pin_attempts_are_throttled_per_child_and_ip(app, client, family):
    parent = family.parent()
    family.active_child(parent)
    code = family.family_code(parent)
    threshold = app.config["THROTTLE_ACCOUNT_IP_THRESHOLD"]
    for _ in range(threshold):
        assert_problem(family.child_login(code, pin="97531"), 401, "invalid_credentials")
    throttled = family.child_login(code)  # even the right PIN waits
    assert_problem(throttled, 429, "too_many_attempts")
    assert int(throttled.headers["Retry-After"]) >= 1
    # Another device (IP) is not locked out by the guesser.
    assert family.child_login(code, environ_base={"REMOTE_ADDR": "10.9.8.7"}).status_code == 200


# --- RFC 8628 -----------------------------------------------------------------------------------------------------


def start(client) -> dict:
    response = client.post("/api/auth/device/code", json={"client_name": "Living-room tablet"})
    assert response.status_code == 200
    return response.get_json()


def poll(client, grant: dict):
    return client.post("/api/auth/device/token", json={"device_code": grant["device_code"]})


def decide(client, family, parent: dict, action: str, user_code: str, child_id: str | None = None):
    body = {"user_code": user_code} | ({"child_id": child_id} if child_id else {})
    return client.post(f"/api/auth/device/{action}", json=body, headers=family.headers(parent))


@pytest.fixture
def setup(client, family):
    parent = family.parent()
    child = family.create_child(parent).get_json()
    family.consent(parent, child["id"])
    return parent, child


def test_device_code_response(client):
    grant = start(client)
    assert USER_CODE.match(grant["user_code"])
    assert (grant["expires_in"], grant["interval"]) == (600, 5)
    assert grant["verification_uri"] == "http://localhost:8000/parent/device"
    assert grant["verification_uri_complete"].endswith("?user_code=" + quote(grant["user_code"]))
    assert len(grant["device_code"]) >= 43
    assert start(client)["user_code"] != grant["user_code"]


def test_device_approved_then_single_use(client, family, clock, setup):
    parent, child = setup
    grant = start(client)
    assert_problem(poll(client, grant), 400, "authorization_pending")
    compact = grant["user_code"].replace("-", "").lower()  # typed by a parent, any case, no dash
    assert decide(client, family, parent, "approve", compact, child["id"]).status_code == 204
    clock.advance(grant["interval"])
    response = poll(client, grant)
    assert response.status_code == 200
    tokens = response.get_json()
    claims = jwt.decode(tokens["access_token"], options={"verify_signature": False})
    assert (claims["sub"], claims["role"], claims["age_band"]) == (child["id"], "child", "6-9")
    assert client.get("/api/auth/me", headers=family.headers(tokens)).status_code == 200
    sessions = client.get(f"/api/auth/children/{child['id']}/sessions", headers=family.headers(parent)).get_json()
    assert [s["id"] for s in sessions["sessions"]] == [tokens["session_id"]]
    clock.advance(grant["interval"])
    assert_problem(poll(client, grant), 400, "invalid_grant")  # single use
    assert_problem(decide(client, family, parent, "approve", compact, child["id"]), 400, "invalid_user_code")


def test_device_denied(client, family, clock, setup):
    parent, _ = setup
    grant = start(client)
    assert decide(client, family, parent, "deny", grant["user_code"]).status_code == 204
    assert_problem(poll(client, grant), 400, "access_denied")
    clock.advance(grant["interval"])
    assert_problem(poll(client, grant), 400, "access_denied")


def test_device_code_expires(client, family, clock, setup):
    parent, child = setup
    grant = start(client)
    clock.advance(grant["expires_in"])
    assert_problem(decide(client, family, parent, "approve", grant["user_code"], child["id"]), 400, "invalid_user_code")
    assert_problem(poll(client, grant), 400, "expired_token")


def test_device_polled_too_fast_slows_down(client, family, clock, setup):
    parent, child = setup
    grant = start(client)
    assert_problem(poll(client, grant), 400, "authorization_pending")
    assert_problem(poll(client, grant), 400, "slow_down")  # interval 5 -> 10
    clock.advance(5)
    assert_problem(poll(client, grant), 400, "slow_down")  # 5 s is no longer enough: 10 -> 15
    clock.advance(15)
    assert_problem(poll(client, grant), 400, "authorization_pending")
    decide(client, family, parent, "approve", grant["user_code"], child["id"])
    assert_problem(poll(client, grant), 400, "slow_down")  # approval does not excuse polling too fast
    clock.advance(20)
    assert poll(client, grant).status_code == 200


def test_device_approval_needs_consent_and_the_own_family(client, family, setup):
    parent, _ = setup
    inactive = family.create_child(parent, "sam").get_json()
    grant = start(client)
    assert_problem(
        decide(client, family, parent, "approve", grant["user_code"], inactive["id"]), 409, "consent_required"
    )
    other = family.parent("b@example.com")
    other_child = family.create_child(other, "robin").get_json()
    family.consent(other, other_child["id"])
    assert_problem(
        decide(client, family, parent, "approve", grant["user_code"], other_child["id"]), 404, "child_not_found"
    )
    assert_problem(poll(client, grant), 400, "authorization_pending")  # still undecided


def test_unknown_codes(app, client, family, setup):
    parent, child = setup
    assert_problem(client.post("/api/auth/device/token", json={"device_code": "nope"}), 400, "invalid_grant")
    threshold = app.config["THROTTLE_ACCOUNT_IP_THRESHOLD"]
    for _ in range(threshold):
        assert_problem(decide(client, family, parent, "approve", "BCDF-GHJK", child["id"]), 400, "invalid_user_code")
    assert_problem(
        decide(client, family, parent, "deny", "BCDF-GHJK"), 429, "too_many_attempts"
    )  # guessing is throttled
