"""Parent MFA through the real auth service: TOTP enrolment with otpauth URI and QR, single-use codes, hashed
recovery codes, throttling, step-up on sensitive actions, and the `amr` claim (issue 20)."""

from __future__ import annotations

import jwt
import pyotp
import pytest
from auth_support import PASSWORD, assert_problem
from sqlalchemy import text
from storyverse_auth.extensions import db


def _claims(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


class Mfa:
    def __init__(self, client, auth, clock) -> None:
        self.client, self.auth, self.clock = client, auth, clock
        self.secret = ""

    def code(self) -> str:
        return pyotp.TOTP(self.secret).at(int(self.clock()))

    def enrol(self, tokens: dict) -> list[str]:
        headers = self.auth.bearer(tokens)
        begun = self.client.post("/api/auth/mfa/totp", json={"password": PASSWORD}, headers=headers)
        assert begun.status_code == 201, begun.get_json()
        self.secret = begun.get_json()["secret"]
        confirmed = self.client.post("/api/auth/mfa/totp/confirm", json={"code": self.code()}, headers=headers)
        assert confirmed.status_code == 200, confirmed.get_json()
        return confirmed.get_json()["recovery_codes"]

    def verify(self, tokens: dict, **body):
        self.clock.advance(30)  # a code is accepted once per 30 s step
        body = body or {"code": self.code()}
        return self.client.post("/api/auth/mfa/verify", json=body, headers=self.auth.bearer(tokens))


@pytest.fixture
def mfa(client, auth, clock) -> Mfa:
    return Mfa(client, auth, clock)


def test_enrolment_gives_an_otpauth_uri_and_qr_and_stores_the_secret_encrypted(app, client, auth, mfa):
    tokens = auth.tokens()
    assert _claims(tokens["access_token"])["amr"] == ["pwd"]
    begun = client.post("/api/auth/mfa/totp", json={"password": PASSWORD}, headers=auth.bearer(tokens)).get_json()
    assert begun["otpauth_uri"].startswith("otpauth://totp/StoryVerse:parent%40example.com?secret=")
    assert "issuer=StoryVerse" in begun["otpauth_uri"]
    assert begun["qr_svg_data_uri"].startswith("data:image/svg+xml;base64,")
    with app.app_context():
        stored = db.session.execute(text("SELECT secret_encrypted FROM mfa_totp")).scalar_one()
    assert begun["secret"].encode() not in bytes(stored)
    wrong = client.post("/api/auth/mfa/totp", json={"password": "not the password at all"}, headers=auth.bearer(tokens))
    assert_problem(wrong, 401, "invalid_credentials")


def test_confirm_returns_ten_hashed_recovery_codes_and_marks_the_session(app, client, auth, mfa):
    tokens = auth.tokens()
    headers = auth.bearer(tokens)
    client.post("/api/auth/mfa/totp", json={"password": PASSWORD}, headers=headers)
    assert_problem(
        client.post("/api/auth/mfa/totp/confirm", json={"code": "000000"}, headers=headers), 401, "invalid_mfa_code"
    )
    mfa.secret = client.post("/api/auth/mfa/totp", json={"password": PASSWORD}, headers=headers).get_json()["secret"]
    confirmed = client.post("/api/auth/mfa/totp/confirm", json={"code": mfa.code()}, headers=headers).get_json()
    codes = confirmed["recovery_codes"]
    assert len(codes) == 10 and len(set(codes)) == 10
    assert _claims(confirmed["caller_token"]["access_token"])["amr"] == ["pwd", "otp", "mfa"]
    with app.app_context():
        hashes = db.session.execute(text("SELECT code_hash FROM mfa_recovery_codes")).scalars().all()
    assert len(hashes) == 10 and not set(codes) & set(hashes)
    assert client.get("/api/auth/mfa", headers=headers).get_json() == {"totp": True, "recovery_codes_left": 10}
    assert_problem(
        client.post("/api/auth/mfa/totp", json={"password": PASSWORD}, headers=headers), 409, "mfa_already_enabled"
    )


def test_a_code_is_accepted_once(client, auth, mfa):
    tokens = auth.tokens()
    mfa.enrol(tokens)  # the confirm used this step's code
    again = client.post("/api/auth/mfa/verify", json={"code": mfa.code()}, headers=auth.bearer(tokens))
    assert_problem(again, 401, "invalid_mfa_code")
    assert mfa.verify(tokens).status_code == 200


def test_recovery_codes_work_once(client, auth, mfa):
    tokens = auth.tokens()
    codes = mfa.enrol(tokens)
    used = mfa.verify(tokens, recovery_code=codes[0])
    assert used.status_code == 200 and used.get_json()["method"] == "recovery"
    assert used.get_json()["recovery_codes_left"] == 9
    assert_problem(mfa.verify(tokens, recovery_code=codes[0]), 401, "invalid_mfa_code")
    assert_problem(mfa.verify(tokens, code="123456", recovery_code=codes[1]), 422, "validation_failed")


def test_step_up_guards_plan_change_consent_child_deletion_and_api_keys(app, client, auth, family, mfa, clock):
    app.config["MFA_STEP_UP_SECONDS"] = 60
    tokens = auth.tokens()
    child = family.create_child(tokens).get_json()
    mfa.enrol(tokens)
    fresh = auth.login().get_json()  # a new session: password only
    assert _claims(fresh["access_token"])["amr"] == ["pwd"]
    headers = auth.bearer(fresh)
    refused = client.post("/api/auth/family/plan", json={"plan": "premium"}, headers=headers)
    assert_problem(refused, 401, "mfa_required")
    assert 'error="insufficient_user_authentication"' in refused.headers["WWW-Authenticate"]
    assert_problem(family.consent(fresh, child["id"]), 401, "mfa_required")
    assert_problem(client.delete(f"/api/auth/children/{child['id']}", headers=headers), 401, "mfa_required")
    key = {"name": "bedtime", "scopes": ["stories:read"], "plan": "basic"}
    assert_problem(client.post("/api/auth/api-keys", json=key, headers=headers), 401, "mfa_required")
    stepped = mfa.verify(fresh)
    assert stepped.status_code == 200
    assert _claims(stepped.get_json()["caller_token"]["access_token"])["amr"] == ["pwd", "otp", "mfa"]
    assert client.post("/api/auth/family/plan", json={"plan": "premium"}, headers=headers).status_code == 202
    assert family.consent(fresh, child["id"]).status_code == 201
    clock.advance(61)  # the check is too old for a sensitive action now
    assert_problem(client.post("/api/auth/family/plan", json={"plan": "premium"}, headers=headers), 401, "mfa_required")
    # refresh keeps the session's amr
    refreshed = client.post("/api/auth/refresh", json={"refresh_token": fresh["refresh_token"]}).get_json()
    assert _claims(refreshed["access_token"])["amr"] == ["pwd", "otp", "mfa"]


def test_without_a_factor_there_is_no_step_up(client, auth):
    tokens = auth.tokens()
    assert (
        client.post("/api/auth/family/plan", json={"plan": "premium"}, headers=auth.bearer(tokens)).status_code == 202
    )


def test_wrong_codes_are_throttled(client, auth, mfa):
    tokens = auth.tokens()
    mfa.enrol(tokens)
    headers = auth.bearer(tokens)
    for _ in range(5):
        assert_problem(
            client.post("/api/auth/mfa/verify", json={"code": "000000"}, headers=headers), 401, "invalid_mfa_code"
        )
    throttled = client.post("/api/auth/mfa/verify", json={"code": mfa.code()}, headers=headers)
    assert_problem(throttled, 429, "too_many_attempts")
    assert int(throttled.headers["Retry-After"]) >= 1


def test_removing_the_factor_needs_a_step_up(app, client, auth, mfa, clock):
    app.config["MFA_STEP_UP_SECONDS"] = 60
    tokens = auth.tokens()
    codes = mfa.enrol(tokens)
    clock.advance(61)
    headers = auth.bearer(tokens)
    assert_problem(client.delete("/api/auth/mfa/totp", headers=headers), 401, "mfa_required")
    assert_problem(client.post("/api/auth/mfa/recovery-codes", headers=headers), 401, "mfa_required")
    assert mfa.verify(tokens, recovery_code=codes[3]).status_code == 200
    assert len(client.post("/api/auth/mfa/recovery-codes", headers=headers).get_json()["recovery_codes"]) == 10
    assert client.delete("/api/auth/mfa/totp", headers=headers).status_code == 204
    assert client.get("/api/auth/mfa", headers=headers).get_json() == {"totp": False, "recovery_codes_left": 0}


def test_children_have_no_mfa_routes(client, family):
    tokens = family.parent()
    _, child = family.active_child(tokens)
    assert_problem(client.get("/api/auth/mfa", headers=family.headers(child)), 403, "parent_only")
    assert "amr" not in _claims(child["access_token"])
