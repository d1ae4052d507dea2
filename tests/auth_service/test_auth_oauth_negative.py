"""OAuth provider, refusals: each with the right OAuth error (RFC 6749 §4.1.2.1 / §5.2, RFC 7636, RFC 9700)."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from sqlalchemy import select
from storyverse_auth.clock import now
from storyverse_auth.extensions import db
from storyverse_auth.models import Account
from storyverse_auth.oauth.models import OAuthAuthorizationCode, OAuthClient
from storyverse_auth.oauth.server import code_hash
from test_auth_oauth_kit import REDIRECT, oauth_error, oauth_kit, pkce, query


@pytest.fixture
def oauth(app, client, auth, family):
    return oauth_kit(app, client, auth, family)


def _redirected_error(response, params) -> str:
    assert response.status_code == 302, response.get_data(as_text=True)
    location = response.headers["Location"]
    assert location.startswith(REDIRECT + "?")
    got = query(location)
    assert got["state"] == params["state"] and "code" not in got
    return got["error"]


def test_wrong_verifier_is_invalid_grant_and_burns_the_code(oauth):
    client_id, _ = oauth.register()
    verifier, challenge = pkce()
    code = oauth.approve(oauth.params(client_id, challenge))
    wrong = oauth.exchange(code, client_id, pkce()[0])
    assert wrong.status_code == 400 and oauth_error(wrong) == "invalid_grant"
    assert oauth_error(oauth.exchange(code, client_id, verifier)) == "invalid_grant"


def test_reused_code_is_refused_and_revokes_what_it_issued(oauth, client):
    client_id, _ = oauth.register()
    verifier, challenge = pkce()
    code = oauth.approve(oauth.params(client_id, challenge))
    first = oauth.exchange(code, client_id, verifier)
    assert first.status_code == 200
    tokens = first.get_json()
    second = oauth.exchange(code, client_id, verifier)
    assert second.status_code == 400 and oauth_error(second) == "invalid_grant"
    assert oauth_error(oauth.refresh(tokens["refresh_token"], client_id)) == "invalid_grant"
    assert (
        client.get("/oauth/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"}).status_code == 401
    )


def test_expired_code_is_invalid_grant(oauth, clock):
    client_id, _ = oauth.register()
    verifier, challenge = pkce()
    code = oauth.approve(oauth.params(client_id, challenge))
    clock.advance(61)
    assert oauth_error(oauth.exchange(code, client_id, verifier)) == "invalid_grant"


def test_code_of_another_client_is_invalid_grant(oauth):
    client_id, _ = oauth.register()
    other_id, _ = oauth.register(name="Other app")
    verifier, challenge = pkce()
    code = oauth.approve(oauth.params(client_id, challenge))
    assert oauth_error(oauth.exchange(code, other_id, verifier)) == "invalid_grant"
    assert oauth.exchange(code, client_id, verifier).status_code == 200


@pytest.mark.parametrize(
    "redirect_uri",
    [
        "https://evil.example.com/callback",
        REDIRECT + "/",
        REDIRECT + "?x=1",
        REDIRECT.upper(),
        "https://app.example.com/callback#frag",
        None,
    ],
)
def test_mismatched_redirect_uri_is_shown_never_redirected(oauth, redirect_uri):
    client_id, _ = oauth.register()
    page = oauth.consent_page(oauth.params(client_id, pkce()[1], redirect_uri=redirect_uri))
    assert page.status_code == 400 and "Location" not in page.headers
    assert "invalid_request" in page.get_data(as_text=True)


def test_redirect_uri_at_the_token_endpoint_must_match_exactly(oauth):
    client_id, _ = oauth.register(redirect_uris=(REDIRECT, "https://app.example.com/other"))
    verifier, challenge = pkce()
    code = oauth.approve(oauth.params(client_id, challenge))
    wrong = oauth.exchange(code, client_id, verifier, redirect_uri="https://app.example.com/other")
    assert oauth_error(wrong) == "invalid_grant"


@pytest.mark.parametrize(
    "pkce_params",
    [
        {},  # missing PKCE
        {"code_challenge_method": "S256"},  # method without challenge
        {"code_challenge": "x" * 43},  # challenge without method (would default to plain)
        {"code_challenge": "x" * 43, "code_challenge_method": "plain"},  # plain PKCE
        {"code_challenge": "short", "code_challenge_method": "S256"},
    ],
    ids=["missing", "no-challenge", "no-method", "plain", "malformed"],
)
def test_authorization_without_s256_pkce_is_invalid_request(oauth, pkce_params):
    client_id, _secret = oauth.register("confidential")  # confidential clients too (OAuth 2.1)
    params = oauth.params(client_id, None, **pkce_params)
    assert _redirected_error(oauth.consent_page(params), params) == "invalid_request"


def test_missing_verifier_at_the_token_endpoint_is_invalid_request(oauth):
    client_id, secret = oauth.register("confidential")
    _verifier, challenge = pkce()
    code = oauth.approve(oauth.params(client_id, challenge))
    assert oauth_error(oauth.exchange(code, client_id, None, secret)) == "invalid_request"


def test_a_child_on_the_consent_page_is_refused_with_access_denied(oauth, family):
    client_id, _ = oauth.register()
    parent = family.parent()
    family.active_child(parent)
    params = oauth.params(client_id, pkce()[1])
    code = family.family_code(parent)
    response = oauth.submit(params, family_code=code, username="robin", pin=family.PIN)
    assert _redirected_error(response, params) == "access_denied"
    assert "Children" in query(response.headers["Location"])["error_description"]
    wrong_pin = oauth.submit(params, family_code=code, username="robin", pin="9999")
    assert wrong_pin.status_code == 401 and "Location" not in wrong_pin.headers


def test_a_child_code_is_refused_at_the_token_endpoint(oauth, family, app):
    """Even a code that names a child (a role change after consent, a bug) never yields tokens."""
    client_id, _ = oauth.register()
    parent = family.parent()
    child, _ = family.active_child(parent)
    verifier, challenge = pkce()
    with app.app_context():
        client_pk = db.session.scalar(select(OAuthClient.id).where(OAuthClient.client_id == client_id))
        ts = now()
        db.session.add(
            OAuthAuthorizationCode(
                code_hash=code_hash("child-code"),
                client_pk=client_pk,
                account_id=uuid.UUID(child["id"]),
                redirect_uri=REDIRECT,
                scope="openid",
                code_challenge=challenge,
                code_challenge_method="S256",
                auth_time=int(ts.timestamp()),
                created_at=ts,
                expires_at=ts + timedelta(seconds=60),
            )
        )
        db.session.commit()
    refused = oauth.exchange("child-code", client_id, verifier)
    assert refused.status_code == 400 and oauth_error(refused) == "invalid_grant"


def test_a_parent_who_becomes_a_child_cannot_refresh(oauth, app):
    client_id, _ = oauth.register()
    tokens = oauth.tokens(client_id)
    with app.app_context():
        account = db.session.scalar(select(Account).where(Account.email == "parent@example.com"))
        account.role = "admin"
        db.session.commit()
    assert oauth_error(oauth.refresh(tokens["refresh_token"], client_id)) == "invalid_grant"


def test_a_disabled_client_is_refused_everywhere_and_its_tokens_die(oauth, client, app):
    client_id, _ = oauth.register()
    tokens = oauth.tokens(client_id)
    verifier, challenge = pkce()
    code = oauth.approve(oauth.params(client_id, challenge))
    runner = app.test_cli_runner()
    result = runner.invoke(args=["oauth-clients", "disable", client_id])
    assert result.exit_code == 0 and "revoked 1 grants" in result.output, result.output
    page = oauth.consent_page(oauth.params(client_id, challenge))
    assert page.status_code == 400 and "invalid_client" in page.get_data(as_text=True)
    assert oauth_error(oauth.exchange(code, client_id, verifier)) == "invalid_client"
    assert oauth_error(oauth.refresh(tokens["refresh_token"], client_id)) == "invalid_client"
    assert (
        client.get("/oauth/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"}).status_code == 401
    )


@pytest.mark.parametrize("response_type", ["token", "id_token", "code id_token", "code token", "none"])
def test_implicit_and_hybrid_response_types_are_unsupported(oauth, response_type):
    client_id, _ = oauth.register()
    params = oauth.params(client_id, pkce()[1], response_type=response_type)
    assert _redirected_error(oauth.consent_page(params), params) == "unsupported_response_type"


@pytest.mark.parametrize(
    "grant_type",
    [
        "password",
        "implicit",
        "urn:ietf:params:oauth:grant-type:device_code",
        "urn:ietf:params:oauth:grant-type:jwt-bearer",
        "urn:ietf:params:oauth:grant-type:token-exchange",
    ],
)
def test_unadvertised_grant_types_are_unsupported(oauth, grant_type):
    client_id, secret = oauth.register("confidential")
    form = {"grant_type": grant_type, "username": "parent@example.com", "password": "x", "scope": "openid"}
    response = oauth.token(form, client_id, secret)
    assert response.status_code == 400 and oauth_error(response) == "unsupported_grant_type"


def test_grant_types_not_registered_for_the_client_are_unauthorized(oauth):
    client_id, secret = oauth.register("confidential", grant_types=("authorization_code",))
    assert oauth_error(oauth.token({"grant_type": "client_credentials"}, client_id, secret)) == "unauthorized_client"
    public_id, _ = oauth.register("public")
    assert oauth_error(oauth.token({"grant_type": "client_credentials"}, public_id)) in (
        "invalid_client",
        "unauthorized_client",
    )


def test_bad_client_credentials_are_invalid_client(oauth):
    client_id, secret = oauth.register("confidential", grant_types=("client_credentials",), redirect_uris=())
    wrong = oauth.token({"grant_type": "client_credentials"}, client_id, secret + "x")
    assert wrong.status_code == 401 and oauth_error(wrong) == "invalid_client"
    assert "WWW-Authenticate" in wrong.headers
    unknown = oauth.token({"grant_type": "client_credentials"}, "svc_nope", "secret")
    assert unknown.status_code == 401 and oauth_error(unknown) == "invalid_client"


def test_unknown_scope_is_invalid_scope(oauth):
    client_id, _ = oauth.register()
    params = oauth.params(client_id, pkce()[1], scope="openid stories:admin")
    assert _redirected_error(oauth.consent_page(params), params) == "invalid_scope"


def test_unknown_client_is_shown_not_redirected(oauth):
    page = oauth.consent_page(oauth.params("svc_unknown", pkce()[1]))
    assert page.status_code == 400 and "Location" not in page.headers


def test_consent_page_csrf_and_credentials(oauth, client):
    client_id, _ = oauth.register()
    oauth.auth.register()
    params = oauth.params(client_id, pkce()[1])
    page = oauth.consent_page(params)
    assert (
        page.headers["X-Frame-Options"] == "DENY"
        and "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    )
    assert "HttpOnly" in page.headers["Set-Cookie"] and "SameSite=Strict" in page.headers["Set-Cookie"]
    forged = client.post("/oauth/authorize", data={**params, "csrf_token": "forged", "action": "approve"})
    assert forged.status_code == 400 and "Location" not in forged.headers
    bad_password = oauth.submit(params, email="parent@example.com", password="wrong password entirely")
    assert bad_password.status_code == 401 and "Location" not in bad_password.headers
    assert "incorrect" in bad_password.get_data(as_text=True)
    denied = oauth.submit(params, action="deny")
    assert _redirected_error(denied, params) == "access_denied"


def test_prompt_none_is_login_required_without_a_single_sign_on_session(oauth):
    client_id, _ = oauth.register()
    params = oauth.params(client_id, pkce()[1], prompt="none")
    assert _redirected_error(oauth.consent_page(params), params) == "login_required"


def test_nonce_replay_is_refused(oauth):
    client_id, _ = oauth.register()
    _verifier, challenge = pkce()
    params = oauth.params(client_id, challenge, nonce="same-nonce")
    oauth.approve(params)
    replay = oauth.params(client_id, challenge, nonce="same-nonce")
    assert _redirected_error(oauth.consent_page(replay), replay) == "invalid_request"


def test_json_bodies_are_not_accepted_at_the_token_endpoint(oauth, client):
    client_id, _secret = oauth.register("confidential", grant_types=("client_credentials",), redirect_uris=())
    response = client.post("/oauth/token", json={"grant_type": "client_credentials", "client_id": client_id})
    assert response.status_code in (400, 401) and "error" in response.get_json()
