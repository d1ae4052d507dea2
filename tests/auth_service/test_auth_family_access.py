"""Who may manage what: no BOLA across families (404, never a 403 that confirms the child exists), children and
admins never manage accounts, co-parents manage the same family; co-parent invitations."""

import re
import uuid

import pytest
from auth_support import PASSWORD, assert_problem
from storyverse_auth.extensions import db
from storyverse_auth.models import Account

CHILD_ROUTES = [
    ("get", "/api/auth/children/{id}", None),
    ("patch", "/api/auth/children/{id}", {"display_name": "Mallory"}),
    ("patch", "/api/auth/children/{id}", {"controls": {"features": ["text", "image", "audio"]}}),
    ("delete", "/api/auth/children/{id}", None),
    ("put", "/api/auth/children/{id}/pin", {"pin": "97531"}),
    ("post", "/api/auth/children/{id}/consent", {"policy_version": "v1", "agreed": ["profile"], "password": PASSWORD}),
    ("get", "/api/auth/children/{id}/sessions", None),
    ("delete", "/api/auth/children/{id}/sessions", None),
]
MANAGEMENT = [
    ("get", "/api/auth/family", None),
    ("post", "/api/auth/family/invitations", {"email": "friend@example.com"}),
    ("get", "/api/auth/children", None),
    ("post", "/api/auth/children", {"display_name": "X", "username": "xavier", "birth_year": 2018}),
    ("post", "/api/auth/device/approve", {"user_code": "BCDF-GHJK", "child_id": str(uuid.uuid4())}),
    ("post", "/api/auth/device/deny", {"user_code": "BCDF-GHJK"}),
    *CHILD_ROUTES,
]


def _call(client, method: str, path: str, body, headers, child_id: str = ""):
    kwargs = {"headers": headers}
    if body is not None:
        kwargs["json"] = body
    return getattr(client, method)(path.format(id=child_id), **kwargs)


@pytest.fixture
def two_families(family):
    """Family A (parent + an active, signed-in child) and family B (parent + its own child)."""
    a = family.parent("a@example.com")
    child_a, child_a_tokens = family.active_child(a, "robin")
    b = family.parent("b@example.com")
    child_b = family.create_child(b, "robin").get_json()
    return a, child_a, child_a_tokens, b, child_b


@pytest.mark.parametrize(("method", "path", "body"), CHILD_ROUTES)
def test_parent_b_never_reaches_family_a_children(client, family, two_families, method, path, body):
    a, child_a, child_a_tokens, b, _ = two_families
    response = _call(client, method, path, body, family.headers(b), child_a["id"])
    assert_problem(response, 404, "child_not_found")  # same answer as for an id that does not exist
    missing = _call(client, method, path, body, family.headers(b), str(uuid.uuid4()))
    assert_problem(missing, 404, "child_not_found")
    # Family A's child is untouched and still signed in.
    got = client.get(f"/api/auth/children/{child_a['id']}", headers=family.headers(a)).get_json()
    assert (got["display_name"], got["controls"]["features"], got["active"]) == ("Robin", ["text"], True)
    assert client.get("/api/auth/me", headers=family.headers(child_a_tokens)).status_code == 200


def test_parent_b_lists_only_its_own_children(client, family, two_families):
    _, _, _, b, child_b = two_families
    listed = client.get("/api/auth/children", headers=family.headers(b)).get_json()["children"]
    assert [c["id"] for c in listed] == [child_b["id"]]
    view = client.get("/api/auth/family", headers=family.headers(b)).get_json()
    assert [c["id"] for c in view["children"]] == [child_b["id"]]


def test_parent_b_cannot_approve_a_device_for_family_a_child(client, family, two_families):
    _, child_a, _, b, _ = two_families
    code = client.post("/api/auth/device/code", json={}).get_json()
    body = {"user_code": code["user_code"], "child_id": child_a["id"]}
    assert_problem(
        client.post("/api/auth/device/approve", json=body, headers=family.headers(b)), 404, "child_not_found"
    )


def _refusals(client, headers: dict, child_id: str) -> dict[str, tuple[int, str]]:
    """Every management route called with ``headers``: route -> (status, code) for the refusals' summary."""
    out = {}
    for method, path, body in MANAGEMENT:
        response = _call(client, method, path, body, headers, child_id)
        assert response.mimetype == "application/problem+json", (method, path)
        out[f"{method} {path}"] = (response.status_code, response.get_json()["code"])
    return out


def test_a_child_never_reaches_management(client, family, two_families):
    _, child_a, child_a_tokens, _, _ = two_families
    refusals = _refusals(client, family.headers(child_a_tokens), child_a["id"])
    assert set(refusals.values()) == {(403, "parent_only")}, refusals
    assert client.get("/api/auth/me", headers=family.headers(child_a_tokens)).status_code == 200


def test_an_admin_never_manages_family_accounts(app, client, family, auth, two_families):
    _, child_a, _, _, _ = two_families
    auth.register("admin@example.com")
    with app.app_context():
        admin = db.session.scalar(db.select(Account).where(Account.email == "admin@example.com"))
        admin.role = "admin"
        db.session.commit()
    tokens = auth.login("admin@example.com").get_json()
    refusals = _refusals(client, family.headers(tokens), child_a["id"])
    assert set(refusals.values()) == {(403, "parent_only")}, refusals


def test_anonymous_is_refused(client, two_families):
    _, child_a, _, _, _ = two_families
    refusals = _refusals(client, {}, child_a["id"])
    assert set(refusals.values()) == {(401, "invalid_token")}, refusals


def _invite_and_join(client, family, outbox, inviter: dict, email: str = "co@example.com"):
    response = client.post("/api/auth/family/invitations", json={"email": email}, headers=family.headers(inviter))
    assert response.status_code == 202, response.get_json()
    token = re.search(r"token=([A-Za-z0-9_\-]+)", outbox[-1].body).group(1)
    return token, client.post(
        "/api/auth/family/join", json={"token": token, "password": PASSWORD, "display_name": "Sam"}
    )


def test_co_parent_joins_and_manages_the_same_children(client, family, outbox):
    a = family.parent("a@example.com")
    child = family.create_child(a).get_json()
    token, joined = _invite_and_join(client, family, outbox, a)
    assert joined.status_code == 201
    co = joined.get_json()
    assert outbox[-1].to == "co@example.com"
    view = client.get("/api/auth/family", headers=family.headers(co)).get_json()
    assert sorted(p["email"] for p in view["parents"]) == ["a@example.com", "co@example.com"]
    url = f"/api/auth/children/{child['id']}"
    assert client.patch(url, json={"display_name": "Rob"}, headers=family.headers(co)).status_code == 200
    assert client.get(url, headers=family.headers(a)).get_json()["display_name"] == "Rob"
    # The co-parent signs in with e-mail + password like any parent.
    assert client.post("/api/auth/login", json={"email": "co@example.com", "password": PASSWORD}).status_code == 200
    # Single use.
    again = client.post("/api/auth/family/join", json={"token": token, "password": PASSWORD, "display_name": "Eve"})
    assert_problem(again, 400, "invalid_invitation")


def test_a_family_has_at_most_two_parents(client, family, outbox):
    a = family.parent("a@example.com")
    _invite_and_join(client, family, outbox, a)
    third = client.post("/api/auth/family/invitations", json={"email": "x@example.com"}, headers=family.headers(a))
    assert_problem(third, 409, "family_full")


def test_a_new_invitation_replaces_the_pending_one(client, family, outbox):
    a = family.parent("a@example.com")
    client.post("/api/auth/family/invitations", json={"email": "one@example.com"}, headers=family.headers(a))
    first = re.search(r"token=([A-Za-z0-9_\-]+)", outbox[-1].body).group(1)
    _, joined = _invite_and_join(client, family, outbox, a, "two@example.com")
    assert joined.status_code == 201
    stale = client.post("/api/auth/family/join", json={"token": first, "password": PASSWORD, "display_name": "X"})
    assert_problem(stale, 400, "invalid_invitation")


def test_invitation_expires(client, family, outbox, clock):
    a = family.parent("a@example.com")
    client.post("/api/auth/family/invitations", json={"email": "co@example.com"}, headers=family.headers(a))
    token = re.search(r"token=([A-Za-z0-9_\-]+)", outbox[-1].body).group(1)
    clock.advance(7 * 24 * 3600 + 1)
    late = client.post("/api/auth/family/join", json={"token": token, "password": PASSWORD, "display_name": "X"})
    assert_problem(late, 400, "invalid_invitation")


def test_an_existing_account_cannot_join_another_family(client, family, outbox):
    a = family.parent("a@example.com")
    family.parent("b@example.com")
    _, joined = _invite_and_join(client, family, outbox, a, "b@example.com")
    assert_problem(joined, 409, "email_taken")


def test_a_weak_password_leaves_the_invitation_usable(client, family, outbox):
    a = family.parent("a@example.com")
    client.post("/api/auth/family/invitations", json={"email": "co@example.com"}, headers=family.headers(a))
    token = re.search(r"token=([A-Za-z0-9_\-]+)", outbox[-1].body).group(1)
    weak = client.post("/api/auth/family/join", json={"token": token, "password": "a" * 20, "display_name": "X"})
    assert_problem(weak, 422, "weak_password")
    ok = client.post("/api/auth/family/join", json={"token": token, "password": PASSWORD, "display_name": "X"})
    assert ok.status_code == 201


def test_garbage_invitation_token(client):
    bad = client.post("/api/auth/family/join", json={"token": "nope", "password": PASSWORD, "display_name": "X"})
    assert_problem(bad, 400, "invalid_invitation")
