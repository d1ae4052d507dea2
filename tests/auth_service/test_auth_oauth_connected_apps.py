"""Issue 20, OAuth: a password reset or change revokes the parent's OAuth grants (and, at the gateway, their access
tokens); the connected-apps list and revoke (own apps only: another parent's is a 404, a child is a 403); RFC 9207
``iss`` on every authorization response, success and error, and in the metadata."""

from __future__ import annotations

import re

import pytest
from auth_support import PASSWORD, assert_problem
from storyverse_auth.extensions import redis_store
from storyverse_contracts.keys import revoked_sid_key
from test_auth_oauth_kit import REDIRECT, oauth_error, oauth_kit, pkce, query, unverified

NEW_PASSWORD = "a brand new bedtime passphrase"
OTHER = "other-parent@example.com"


@pytest.fixture
def oauth(app, client, auth, family):
    return oauth_kit(app, client, auth, family)


def _denylisted(app, access_token: str) -> bool:
    sid = unverified(access_token)[1]["sid"]
    with app.app_context():
        return bool(redis_store.client.exists(revoked_sid_key(sid)))


def _apps(client, auth, tokens) -> list[dict]:
    response = client.get("/api/auth/connected-apps", headers=auth.bearer(tokens))
    assert response.status_code == 200, response.get_json()
    return response.get_json()["apps"]


# -- RFC 9207 ----------------------------------------------------------------------------------------------------------


def test_metadata_says_iss_is_in_every_authorization_response(client):
    doc = client.get("/.well-known/openid-configuration").get_json()
    assert doc["authorization_response_iss_parameter_supported"] is True


def test_success_redirect_carries_iss(app, oauth):
    client_id, _ = oauth.register()
    params = oauth.params(client_id, pkce()[1])
    oauth.auth.register("parent@example.com")
    response = oauth.submit(params, email="parent@example.com", password=PASSWORD)
    assert response.status_code == 302
    got = query(response.headers["Location"])
    assert got["iss"] == app.config["ISSUER"] and "code" in got and got["state"] == params["state"]


@pytest.mark.parametrize("case", ["deny", "prompt_none", "no_pkce", "child"])
def test_error_redirects_carry_iss(app, client, oauth, family, case):
    client_id, _ = oauth.register()
    params = oauth.params(client_id, pkce()[1])
    if case == "deny":
        response = oauth.submit(params, action="deny")
    elif case == "prompt_none":
        response = oauth.consent_page({**params, "prompt": "none"})
    elif case == "no_pkce":
        response = oauth.consent_page(oauth.params(client_id, None))
    else:
        parent = family.parent()
        family.active_child(parent)
        code = family.family_code(parent)
        response = oauth.submit(params, family_code=code, username="robin", pin=family.PIN)
    assert response.status_code == 302, response.get_data(as_text=True)
    assert response.headers["Location"].startswith(REDIRECT + "?")
    got = query(response.headers["Location"])
    assert got["iss"] == app.config["ISSUER"] and "error" in got, got


# -- password reset / change revoke the grants -------------------------------------------------------------------------


def test_password_change_revokes_oauth_grants_and_their_access_tokens(app, client, auth, oauth):
    client_id, _ = oauth.register()
    granted = oauth.tokens(client_id)
    assert not _denylisted(app, granted["access_token"])
    session = auth.tokens()
    body = {"current_password": PASSWORD, "new_password": NEW_PASSWORD}
    assert client.post("/api/auth/password/change", json=body, headers=auth.bearer(session)).status_code == 204
    assert oauth_error(oauth.refresh(granted["refresh_token"], client_id)) == "invalid_grant"
    assert _denylisted(app, granted["access_token"])  # sv-jwt refuses it from the next request on
    assert _apps(client, auth, _login(auth)) == []


def _login(auth) -> dict:
    response = auth.login(password=NEW_PASSWORD)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def test_password_reset_revokes_oauth_grants(app, client, oauth, outbox):
    client_id, _ = oauth.register()
    granted = oauth.tokens(client_id)
    assert client.post("/api/auth/password/forgot", json={"email": "parent@example.com"}).status_code == 202
    mail = [m for m in outbox if m.subject.startswith("Reset")][-1]
    token = re.search(r"token=([A-Za-z0-9_\-]+)", mail.body).group(1)
    reset = client.post("/api/auth/password/reset", json={"token": token, "new_password": NEW_PASSWORD})
    assert reset.status_code == 204
    assert oauth_error(oauth.refresh(granted["refresh_token"], client_id)) == "invalid_grant"
    assert _denylisted(app, granted["access_token"])


def test_a_failed_password_change_revokes_nothing(client, auth, oauth):
    client_id, _ = oauth.register()
    granted = oauth.tokens(client_id)
    session = auth.tokens()
    body = {"current_password": "not the password at all", "new_password": NEW_PASSWORD}
    assert client.post("/api/auth/password/change", json=body, headers=auth.bearer(session)).status_code == 401
    assert oauth.refresh(granted["refresh_token"], client_id).status_code == 200


# -- connected apps ----------------------------------------------------------------------------------------------------


def test_connected_apps_lists_and_revokes_the_parents_own_apps(app, client, auth, oauth):
    reader, _ = oauth.register(name="Bedtime Reader")
    painter, _ = oauth.register(name="Story Painter")
    first, second = oauth.tokens(reader, scope="openid profile"), oauth.tokens(reader, scope="openid email")
    kept = oauth.tokens(painter)
    session = auth.tokens()
    apps = {a["client_name"]: a for a in _apps(client, auth, session)}
    assert set(apps) == {"Bedtime Reader", "Story Painter"}
    assert apps["Bedtime Reader"]["grants"] == 2 and set(apps["Bedtime Reader"]["scopes"]) == {
        "openid",
        "profile",
        "email",
    }
    assert apps["Bedtime Reader"]["client_id"] == reader
    gone = client.delete(f"/api/auth/connected-apps/{apps['Bedtime Reader']['id']}", headers=auth.bearer(session))
    assert gone.status_code == 204
    for tokens in (first, second):
        assert oauth_error(oauth.refresh(tokens["refresh_token"], reader)) == "invalid_grant"
        assert _denylisted(app, tokens["access_token"])
    assert oauth.refresh(kept["refresh_token"], painter).status_code == 200  # the other app is untouched
    assert [a["client_name"] for a in _apps(client, auth, session)] == ["Story Painter"]
    again = client.delete(f"/api/auth/connected-apps/{apps['Bedtime Reader']['id']}", headers=auth.bearer(session))
    assert_problem(again, 404, "app_not_found")


def test_another_parents_app_is_a_404_and_children_are_refused(client, auth, oauth, family):
    reader, _ = oauth.register()
    granted = oauth.tokens(reader)  # parent@example.com's grant
    owner = auth.tokens()
    app_id = _apps(client, auth, owner)[0]["id"]
    other = auth.tokens(OTHER)  # another family
    assert _apps(client, auth, other) == []
    refused = client.delete(f"/api/auth/connected-apps/{app_id}", headers=auth.bearer(other))
    assert_problem(refused, 404, "app_not_found")
    _, child = family.active_child(owner)
    assert client.get("/api/auth/connected-apps", headers=auth.bearer(child)).status_code == 403
    assert client.delete(f"/api/auth/connected-apps/{app_id}", headers=auth.bearer(child)).status_code == 403
    assert client.get("/api/auth/connected-apps").status_code == 401
    assert oauth.refresh(granted["refresh_token"], reader).status_code == 200  # nobody else revoked it
