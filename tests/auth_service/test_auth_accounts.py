"""Register, login, me; password rules; argon2id rehash; enumeration; brute-force back-off."""

import time

import pytest
from argon2 import extract_parameters
from auth_support import PASSWORD, assert_problem
from storyverse_auth.extensions import db, redis_store
from storyverse_auth.models import Account
from storyverse_auth.password.hashing import Passwords
from storyverse_auth.redis_keys import throttle_account_ip, throttle_lock


def test_register_creates_parent_and_family(app, client, auth, outbox):
    response = auth.register(family_name="The Pats")
    assert response.status_code == 202
    with app.app_context():
        account = db.session.scalar(db.select(Account))
        assert account.email == "parent@example.com" and account.role == "parent"
        assert account.family.name == "The Pats" and account.family.tier == "basic"
        assert account.family.time_zone == "Europe/Paris"
        assert account.password_hash.startswith("$argon2id$")
    assert outbox[-1].subject == "Welcome to StoryVerse"


def test_email_is_case_insensitive(auth):
    auth.register("Parent@Example.COM")
    assert auth.login("parent@example.com").status_code == 200


def test_login_returns_tokens_and_me_works(client, auth):
    tokens = auth.tokens()
    assert tokens["token_type"] == "Bearer" and tokens["expires_in"] == 600
    me = client.get("/api/auth/me", headers=auth.bearer(tokens)).get_json()
    assert me["email"] == "parent@example.com" and me["role"] == "parent"
    assert me["family"]["time_zone"] == "Europe/Paris"


@pytest.mark.parametrize("password", ["short pass", "x" * 257])
def test_register_enforces_length_bounds(auth, password):
    body = assert_problem(auth.register(password=password), 422, "validation_failed")
    assert "password" in body["errors"]["json"]


def test_service_policy_applies_configured_minimum(app, auth):
    app.config["PASSWORD_MIN_LENGTH"] = 20
    body = assert_problem(auth.register(password="sixteen chars ok"), 422, "weak_password")
    assert "at least 20" in body["detail"]


@pytest.mark.parametrize(
    "password, fragment",
    [
        ("passwordpassword", "too common"),
        ("aaaaaaaaaaaaaaaaaaaa", "too common"),
        ("Correct Horse Battery Staple", "too common"),
        ("parent@example.com", "e-mail"),
    ],
)
def test_register_rejects_weak_passwords(client, auth, password, fragment):
    body = assert_problem(auth.register(password=password), 422, "weak_password")
    assert fragment in body["detail"]


def test_long_passwords_and_no_composition_rules(auth):
    long_password = "all lower case words are fine " * 3  # 90 chars, no digits or symbols
    assert auth.register(password=long_password).status_code == 202
    assert auth.login(password=long_password).status_code == 200


@pytest.mark.parametrize(
    "patch, field",
    [
        ({"email": "not-an-email"}, "email"),
        ({"time_zone": "Mars/Olympus"}, "time_zone"),
        ({"display_name": ""}, "display_name"),
    ],
)
def test_register_validation(auth, patch, field):
    body = assert_problem(auth.register(**patch), 422, "validation_failed")
    assert field in body["errors"]["json"]


def test_unstorable_strings_are_refused_before_validation(auth):
    # NUL is refused for every field by the input guard (test_auth_hostile_input.py), before the schema runs.
    assert_problem(auth.register(display_name="a\x00b"), 400, "bad_request")


def test_me_requires_a_token(client):
    assert_problem(client.get("/api/auth/me"), 401, "invalid_token")
    assert_problem(client.get("/api/auth/me", headers={"Authorization": "Bearer garbage"}), 401, "invalid_token")


def test_wrong_password_and_unknown_account_are_identical(client, auth):
    auth.register()
    known = auth.login(password="wrong password but long")
    unknown = auth.login("nobody@example.com", password="wrong password but long")
    assert known.status_code == unknown.status_code == 401
    strip = lambda r: {k: v for k, v in r.get_json().items() if k != "request_id"}  # noqa: E731
    assert strip(known) == strip(unknown)
    assert known.get_json()["code"] == "invalid_credentials"


def test_register_known_and_unknown_are_identical(auth, outbox):
    first, second = auth.register(), auth.register()
    assert first.status_code == second.status_code == 202
    assert first.get_json() == second.get_json()
    assert outbox[-1].subject == "StoryVerse: someone tried to register"


def test_forgot_known_and_unknown_are_identical(client, auth, outbox):
    auth.register()
    known = client.post("/api/auth/password/forgot", json={"email": "parent@example.com"})
    unknown = client.post("/api/auth/password/forgot", json={"email": "nobody@example.com"})
    assert known.status_code == unknown.status_code == 202
    assert known.get_json() == unknown.get_json()
    assert [m.to for m in outbox if m.subject.startswith("Reset")] == ["parent@example.com"]


def test_login_does_the_same_argon2_work_for_known_and_unknown_accounts(app, client, auth):
    """Equal timing by equal work: exactly one argon2id verification with the production parameters on both paths
    (a ratio of wall-clock medians is noise on a loaded 2-core machine; the cost itself is in bench.auth_bench)."""
    app.config.update(THROTTLE_ACCOUNT_IP_THRESHOLD=1000, THROTTLE_IP_THRESHOLD=1000)
    passwords = Passwords(2, 19456, 1)
    app.extensions["sv_password_hasher"] = passwords  # before registering: same params as the dummy
    auth.register()
    passwords.hasher = _CountingHasher(passwords.hasher)
    bad = "a wrong password that is long"
    assert auth.login(password=bad).status_code == 401
    known, passwords.hasher.verified = passwords.hasher.verified, []
    assert auth.login("nobody@example.com", password=bad).status_code == 401
    unknown = passwords.hasher.verified
    assert len(known) == len(unknown) == 1
    assert known == unknown == [(2, 19456, 1)]


class _CountingHasher:
    """An argon2 PasswordHasher that records the cost parameters of every hash it verifies."""

    def __init__(self, hasher) -> None:
        self.hasher, self.verified = hasher, []

    def __getattr__(self, name):
        return getattr(self.hasher, name)

    def verify(self, stored_hash: str, password: str) -> bool:
        params = extract_parameters(stored_hash)
        self.verified.append((params.time_cost, params.memory_cost, params.parallelism))
        return self.hasher.verify(stored_hash, password)


@pytest.mark.parametrize("endpoint", ["register", "forgot"])
def test_register_and_forgot_never_answer_faster_than_the_floor(app, client, auth, endpoint):
    """The response floor hides the extra write and mail of one branch: every answer, known or unknown address,
    takes at least ENUMERATION_FLOOR_SECONDS (a lower bound holds on a loaded machine; a ratio would not)."""
    app.config.update(ENUMERATION_FLOOR_SECONDS=0.05, THROTTLE_ACCOUNT_IP_THRESHOLD=10**6)
    auth.register("known@example.com")
    if endpoint == "register":
        new = iter(range(10**6))
        known_call = lambda: auth.register("known@example.com")  # noqa: E731
        unknown_call = lambda: auth.register(f"new{next(new)}@example.com")  # noqa: E731
    else:
        known_call = lambda: client.post("/api/auth/password/forgot", json={"email": "known@example.com"})  # noqa: E731
        unknown_call = lambda: client.post("/api/auth/password/forgot", json={"email": "nobody@example.com"})  # noqa: E731
    for call in (known_call, unknown_call) * 3:
        start = time.perf_counter()
        assert call().status_code == 202
        assert time.perf_counter() - start >= 0.05


def test_rehash_when_parameters_change(app, auth):
    auth.register()
    app.extensions["sv_password_hasher"] = Passwords(2, 16, 1)
    assert auth.login().status_code == 200
    with app.app_context():
        stored = db.session.scalar(db.select(Account.password_hash))
    params = extract_parameters(stored)
    assert (params.time_cost, params.memory_cost) == (2, 16)


def test_backoff_after_repeated_failures(app, auth):
    auth.register()
    for _ in range(5):
        assert auth.login(password="wrong password but long").status_code == 401
    throttled = auth.login(password="wrong password but long")
    assert_problem(throttled, 429, "too_many_attempts")
    assert throttled.headers["Retry-After"] == "2"
    assert auth.login().status_code == 429  # even the right password waits
    counter = throttle_account_ip("parent@example.com", "127.0.0.1")
    with app.app_context():
        client = redis_store.client
        assert 0 < client.ttl(counter) <= app.config["THROTTLE_WINDOW_SECONDS"]  # never permanent
        client.delete(throttle_lock(counter))  # the wait elapses
        assert auth.login(password="wrong password but long").status_code == 401
        assert auth.login(password="wrong password but long").headers["Retry-After"] == "4"  # doubled
        client.delete(throttle_lock(counter))
    assert auth.login().status_code == 200
    with app.app_context():
        assert not redis_store.client.exists(counter)  # success clears the (account, IP) counter


def test_per_ip_throttle_across_accounts(app, auth):
    app.config["THROTTLE_IP_THRESHOLD"] = 3
    for i in range(3):
        assert auth.login(f"user{i}@example.com", password="wrong password but long").status_code == 401
    assert_problem(auth.login("other@example.com", password=PASSWORD), 429, "too_many_attempts")
