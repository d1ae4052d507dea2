"""OAuth 2.1 / OIDC provider, happy paths: code + PKCE (public and confidential clients, and with a real OAuth client
library against a real WSGI server), OIDC ID tokens and userinfo, refresh rotation, client credentials,
revocation (RFC 7009) and introspection (RFC 7662)."""

from __future__ import annotations

import re
from html import unescape

import jwt
import pytest
import requests
from auth_support import PASSWORD
from authlib.integrations.requests_client import OAuth2Session
from storyverse_auth import create_app
from test_auth_oauth_kit import REDIRECT, oauth_error, oauth_kit, pkce, query, unverified

AUDIENCE = "storyverse-api"


@pytest.fixture
def oauth(app, client, auth, family):
    return oauth_kit(app, client, auth, family)


def _jwks_key(client, token: str):
    kid = jwt.get_unverified_header(token)["kid"]
    keys = client.get("/.well-known/jwks.json").get_json()["keys"]
    jwk = next(k for k in keys if k["kid"] == kid)
    return jwt.PyJWK.from_dict(jwk)


def test_code_pkce_flow_for_a_public_client_issues_rfc9068_access_and_oidc_id_tokens(oauth, client, app):
    client_id, _ = oauth.register("public")
    verifier, challenge = pkce()
    params = oauth.params(client_id, challenge)
    code = oauth.approve(params)
    response = oauth.exchange(code, client_id, verifier)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.headers["Cache-Control"] == "no-store"
    body = response.get_json()
    assert body["token_type"] == "Bearer" and body["scope"] == "openid profile email"
    assert body["refresh_token"].startswith("svort_")

    header, _ = unverified(body["access_token"])
    assert header["typ"] == "at+jwt" and header["kid"]
    key = _jwks_key(client, body["access_token"])
    verified = jwt.decode(
        body["access_token"], key, algorithms=[header["alg"]], audience=AUDIENCE, issuer=app.config["ISSUER"]
    )
    assert verified["client_id"] == client_id and verified["role"] == "parent" and verified["sid"]
    assert verified["scope"] == "openid profile email" and verified["family_id"] and verified["children"] == []

    id_header, _ = unverified(body["id_token"])
    # ID tokens: always RS256 (OIDC Core 1.0 §15.1), by their own published key; access tokens: JWT_ALGORITHM
    assert id_header["typ"] == "JWT" and id_header["alg"] == "RS256" and header["alg"] == app.config["JWT_ALGORITHM"]
    id_key = _jwks_key(client, body["id_token"])
    id_claims = jwt.decode(body["id_token"], id_key, algorithms=["RS256"], audience=client_id)
    assert id_claims["iss"] == app.config["ISSUER"] and id_claims["sub"] == verified["sub"]
    assert id_claims["nonce"] == params["nonce"] and id_claims["at_hash"]
    assert id_claims["email"] == "parent@example.com" and id_claims["name"] == "Pat"
    assert id_claims["auth_time"] <= id_claims["iat"]

    info = client.get("/oauth/userinfo", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert info.status_code == 200
    assert info.get_json() == {
        "sub": verified["sub"],
        "name": "Pat",
        "email": "parent@example.com",
        "email_verified": False,
    }


def test_scopes_narrow_the_id_token_and_userinfo(oauth, client):
    client_id, _ = oauth.register("public")
    body = oauth.tokens(client_id, scope="openid")
    assert "email" not in unverified(body["id_token"])[1] and "name" not in unverified(body["id_token"])[1]
    info = client.get("/oauth/userinfo", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert set(info.get_json()) == {"sub"}
    without_openid = oauth.tokens(client_id, scope="profile")
    assert "id_token" not in without_openid
    info = client.get("/oauth/userinfo", headers={"Authorization": f"Bearer {without_openid['access_token']}"})
    assert info.status_code == 403 and info.get_json()["error"] == "insufficient_scope"


def test_confidential_client_with_basic_and_post_authentication(oauth):
    client_id, secret = oauth.register("confidential")
    assert secret and secret.startswith("svcs_")
    verifier, challenge = pkce()
    code = oauth.approve(oauth.params(client_id, challenge))
    assert oauth.exchange(code, client_id, verifier).status_code == 401  # a confidential client must authenticate
    code = oauth.approve(oauth.params(client_id, challenge))
    tokens = oauth.exchange(code, client_id, verifier, secret)
    assert tokens.status_code == 200, tokens.get_data(as_text=True)
    refreshed = oauth.token(
        {"grant_type": "refresh_token", "refresh_token": tokens.get_json()["refresh_token"]}, client_id, secret, False
    )
    assert refreshed.status_code == 200, refreshed.get_data(as_text=True)


def test_refresh_rotates_on_every_use_and_reuse_revokes_the_grant(oauth, client, clock):
    client_id, _ = oauth.register("public")
    first = oauth.tokens(client_id)
    second = oauth.refresh(first["refresh_token"], client_id)
    assert second.status_code == 200, second.get_data(as_text=True)
    second = second.get_json()
    assert second["refresh_token"] != first["refresh_token"] and "id_token" not in second
    assert unverified(second["access_token"])[1]["sid"] == unverified(first["access_token"])[1]["sid"]
    # inside the grace window the previous token returns the same successor (a lost response, a race)
    again = oauth.refresh(first["refresh_token"], client_id)
    assert again.status_code == 200 and again.get_json()["refresh_token"] == second["refresh_token"]
    clock.advance(31)
    reused = oauth.refresh(first["refresh_token"], client_id)
    assert reused.status_code == 400 and oauth_error(reused) == "invalid_grant"
    # the whole grant is revoked: the current refresh token and the access tokens too
    assert oauth_error(oauth.refresh(second["refresh_token"], client_id)) == "invalid_grant"
    info = client.get("/oauth/userinfo", headers={"Authorization": f"Bearer {second['access_token']}"})
    assert info.status_code == 401


def test_refresh_token_is_bound_to_its_client_and_never_accepted_first_party(oauth, client):
    client_id, _ = oauth.register("public")
    other_id, _ = oauth.register("public", name="Other app")
    tokens = oauth.tokens(client_id)
    assert oauth_error(oauth.refresh(tokens["refresh_token"], other_id)) == "invalid_grant"
    assert oauth.refresh(tokens["refresh_token"], client_id).status_code == 200  # the other client's try burned nothing
    first_party = client.post("/api/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert first_party.status_code == 401
    session_token = oauth.auth.tokens()["refresh_token"]
    assert oauth_error(oauth.refresh(session_token, client_id)) == "invalid_grant"


def test_client_credentials_for_partner_back_ends(oauth, client):
    client_id, secret = oauth.register("confidential", grant_types=("client_credentials",), redirect_uris=())
    response = oauth.token({"grant_type": "client_credentials"}, client_id, secret)
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    assert "refresh_token" not in body and "id_token" not in body
    header, claims = unverified(body["access_token"])
    assert header["typ"] == "at+jwt" and claims["aud"] == AUDIENCE
    assert claims["sub"] == client_id and claims["client_id"] == client_id and "role" not in claims
    scoped = oauth.token({"grant_type": "client_credentials", "scope": "openid"}, client_id, secret)
    assert oauth_error(scoped) == "invalid_scope"
    introspected = oauth.endpoint("/oauth/introspect", body["access_token"], client_id, secret).get_json()
    assert introspected["active"] is True and introspected["sub"] == client_id


def test_revocation_of_refresh_and_access_tokens(oauth, client):
    client_id, _ = oauth.register("public")
    tokens = oauth.tokens(client_id)
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    revoked = oauth.endpoint("/oauth/revoke", tokens["access_token"], client_id)
    assert revoked.status_code == 200
    assert client.get("/oauth/userinfo", headers=bearer).status_code == 401
    assert oauth.refresh(tokens["refresh_token"], client_id).status_code == 200  # access revocation keeps the grant
    tokens = oauth.tokens(client_id)
    assert oauth.endpoint("/oauth/revoke", tokens["refresh_token"], client_id).status_code == 200
    assert oauth_error(oauth.refresh(tokens["refresh_token"], client_id)) == "invalid_grant"
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert client.get("/oauth/userinfo", headers=bearer).status_code == 401  # the grant's access tokens too
    # unknown tokens: 200 (RFC 7009 §2.2); another client's token: refused
    assert oauth.endpoint("/oauth/revoke", "not-a-token", client_id).status_code == 200
    other_id, _ = oauth.register("public", name="Other app")
    fresh = oauth.tokens(client_id)
    assert oauth_error(oauth.endpoint("/oauth/revoke", fresh["refresh_token"], other_id)) == "invalid_grant"


def test_introspection_is_for_confidential_clients_and_their_own_tokens(oauth):
    client_id, secret = oauth.register("confidential")
    tokens = oauth.tokens(client_id, secret)
    active = oauth.endpoint("/oauth/introspect", tokens["access_token"], client_id, secret)
    assert active.status_code == 200, active.get_data(as_text=True)
    body = active.get_json()
    assert body["active"] is True and body["client_id"] == client_id and body["scope"] == "openid profile email"
    assert body["token_type"] == "Bearer" and body["role"] == "parent"
    refresh = oauth.endpoint("/oauth/introspect", tokens["refresh_token"], client_id, secret).get_json()
    assert refresh["active"] is True and refresh["token_type"] == "refresh_token"
    # the ID token is not an access token
    assert oauth.endpoint("/oauth/introspect", tokens["id_token"], client_id, secret).get_json() == {"active": False}
    public_id, _ = oauth.register("public", name="Public app")
    public_tokens = oauth.tokens(public_id)
    assert oauth.endpoint("/oauth/introspect", public_tokens["access_token"], public_id).status_code == 401
    # a confidential client cannot see another client's tokens
    assert oauth.endpoint("/oauth/introspect", public_tokens["access_token"], client_id, secret).get_json() == {
        "active": False
    }
    oauth.endpoint("/oauth/revoke", tokens["refresh_token"], client_id, secret)
    assert oauth.endpoint("/oauth/introspect", tokens["access_token"], client_id, secret).get_json() == {
        "active": False
    }


def test_full_flow_with_authlib_oauth2session_against_a_real_wsgi_server(oauth, live_server):
    """A real OAuth client library (Authlib's OAuth2Session, PKCE S256, nonce, state) against the threaded server."""
    client_id, _ = oauth.register("public")
    oauth.auth.register()
    session = OAuth2Session(
        client_id,
        redirect_uri=REDIRECT,
        scope="openid profile email",
        code_challenge_method="S256",
        token_endpoint_auth_method="none",
    )
    verifier = pkce()[0]
    url, state = session.create_authorization_url(f"{live_server}/oauth/authorize", code_verifier=verifier, nonce="n-1")
    browser = requests.Session()
    page = browser.get(url, timeout=10)
    assert page.status_code == 200 and "Bedtime Reader" in page.text
    csrf = unescape(re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1))
    form = dict(query(url), csrf_token=csrf, action="approve", email="parent@example.com", password=PASSWORD)
    answer = browser.post(f"{live_server}/oauth/authorize", data=form, allow_redirects=False, timeout=10)
    assert answer.status_code == 302, answer.text
    token = session.fetch_token(
        f"{live_server}/oauth/token", authorization_response=answer.headers["Location"], code_verifier=verifier
    )
    assert unverified(token["id_token"])[1]["nonce"] == "n-1" and query(answer.headers["Location"])["state"] == state
    info = session.get(f"{live_server}/oauth/userinfo", timeout=10)
    assert info.status_code == 200 and info.json()["email"] == "parent@example.com"
    refreshed = session.refresh_token(f"{live_server}/oauth/token")
    assert refreshed["refresh_token"] != token["refresh_token"]
    session.revoke_token(f"{live_server}/oauth/revoke", refreshed["refresh_token"])
    assert session.get(f"{live_server}/oauth/userinfo", timeout=10).status_code == 401


def test_oauth_endpoints_stay_out_of_the_openapi_document(client):
    paths = client.get("/openapi.json").get_json()["paths"]
    assert not [path for path in paths if path.startswith("/oauth/")]
    assert "/api/auth/oauth/clients" in paths


def test_app_factory_builds_one_oauth_server_per_app():
    first, second = create_app({"TESTING": True}), create_app({"TESTING": True})
    assert first.extensions["sv_oauth"] is not second.extensions["sv_oauth"]
