"""The discovery document validated against what the endpoints actually do: every advertised endpoint answers,
every advertised grant / response type / PKCE method / auth method / scope works, and unadvertised ones are refused."""

from __future__ import annotations

from urllib.parse import urlsplit

import jwt
import pytest
from test_auth_oauth_kit import oauth_error, oauth_kit, pkce, query, unverified

EXPECTED_GRANTS = {"authorization_code", "refresh_token", "client_credentials"}


@pytest.fixture
def oauth(app, client, auth, family):
    return oauth_kit(app, client, auth, family)


@pytest.fixture
def doc(client) -> dict:
    response = client.get("/.well-known/openid-configuration")
    assert response.status_code == 200
    return response.get_json()


def _path(url: str) -> str:
    return urlsplit(url).path


def test_the_document_lists_exactly_what_is_supported(doc, app):
    assert doc["issuer"] == app.config["ISSUER"]
    assert doc["response_types_supported"] == ["code"]
    assert doc["response_modes_supported"] == ["query"]
    assert set(doc["grant_types_supported"]) == EXPECTED_GRANTS
    assert doc["code_challenge_methods_supported"] == ["S256"]
    assert set(doc["token_endpoint_auth_methods_supported"]) == {"client_secret_basic", "client_secret_post", "none"}
    assert set(doc["introspection_endpoint_auth_methods_supported"]) == {"client_secret_basic", "client_secret_post"}
    assert doc["scopes_supported"] == ["openid", "profile", "email"]
    assert doc["subject_types_supported"] == ["public"]
    assert doc["id_token_signing_alg_values_supported"] == ["RS256"]  # OIDC Core 1.0 §15.1, whatever JWT_ALGORITHM is
    assert doc["access_token_signing_alg_values_supported"] == [app.config["JWT_ALGORITHM"]]
    for endpoint in ("authorization", "token", "userinfo", "revocation", "introspection"):
        assert doc[f"{endpoint}_endpoint"].startswith(app.config["ISSUER"].rstrip("/") + "/oauth/")
    assert "password" not in doc["grant_types_supported"] and "token" not in doc["response_types_supported"]


def test_every_advertised_endpoint_answers(doc, client, oauth):
    assert client.get(_path(doc["jwks_uri"])).status_code == 200
    client_id, _ = oauth.register()
    page = client.get(_path(doc["authorization_endpoint"]), query_string=oauth.params(client_id, pkce()[1]))
    assert page.status_code == 200 and page.mimetype == "text/html"
    for name in ("token_endpoint", "revocation_endpoint", "introspection_endpoint"):
        response = client.post(_path(doc[name]), data={})
        assert response.status_code in (400, 401), (name, response.status_code)
        assert "error" in response.get_json()
    userinfo = client.get(_path(doc["userinfo_endpoint"]))
    assert userinfo.status_code == 401 and userinfo.headers["WWW-Authenticate"].startswith("Bearer")


def test_every_advertised_auth_method_works_at_the_token_endpoint(doc, oauth):
    confidential, secret = oauth.register("confidential", grant_types=("client_credentials",), redirect_uris=())
    public, _ = oauth.register("public")
    tokens = oauth.tokens(public)  # none
    for method in doc["token_endpoint_auth_methods_supported"]:
        if method == "none":
            response = oauth.refresh(tokens["refresh_token"], public)
        else:
            form = {"grant_type": "client_credentials"}
            response = oauth.token(form, confidential, secret, basic=method == "client_secret_basic")
        assert response.status_code == 200, (method, response.get_data(as_text=True))
    jwt_assertion = oauth.token(
        {
            "grant_type": "client_credentials",
            "client_id": confidential,
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": "x.y.z",
        },
        confidential,
    )
    assert oauth_error(jwt_assertion) == "invalid_client"  # private_key_jwt / client_secret_jwt: not advertised


def test_every_advertised_grant_works(doc, oauth):
    public, _ = oauth.register("public")
    confidential, secret = oauth.register("confidential", grant_types=("client_credentials",), redirect_uris=())
    tokens = oauth.tokens(public)  # authorization_code
    works = {
        "authorization_code": True,
        "refresh_token": oauth.refresh(tokens["refresh_token"], public).status_code == 200,
        "client_credentials": oauth.token({"grant_type": "client_credentials"}, confidential, secret).status_code
        == 200,
    }
    assert {grant for grant in doc["grant_types_supported"] if works.get(grant)} == set(doc["grant_types_supported"])


def test_advertised_scopes_pkce_method_and_alg_match_the_tokens(doc, oauth, client):
    public, _ = oauth.register("public")
    tokens = oauth.tokens(public, scope=" ".join(doc["scopes_supported"]))
    assert tokens["scope"].split() == doc["scopes_supported"]
    header, claims = unverified(tokens["id_token"])
    assert header["alg"] in doc["id_token_signing_alg_values_supported"]
    assert claims["iss"] == doc["issuer"] == unverified(tokens["access_token"])[1]["iss"]
    assert set(claims) <= set(doc["claims_supported"])
    keys = client.get(_path(doc["jwks_uri"])).get_json()["keys"]
    jwk = jwt.PyJWK.from_dict(next(k for k in keys if k["kid"] == header["kid"]))
    jwt.decode(tokens["id_token"], jwk, algorithms=[header["alg"]], audience=public)
    assert doc["code_challenge_methods_supported"] == ["S256"]  # plain is refused: test_auth_oauth_negative


def test_userinfo_claims_are_in_claims_supported(doc, oauth, client):
    public, _ = oauth.register("public")
    tokens = oauth.tokens(public)
    info = client.get(_path(doc["userinfo_endpoint"]), headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert set(info.get_json()) <= set(doc["claims_supported"])
    posted = client.post(_path(doc["userinfo_endpoint"]), headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert posted.status_code == 200


def test_id_token_is_never_an_access_token_here(oauth, client):
    public, _ = oauth.register("public")
    tokens = oauth.tokens(public)
    info = client.get("/oauth/userinfo", headers={"Authorization": f"Bearer {tokens['id_token']}"})
    assert info.status_code == 401 and info.get_json()["error"] == "invalid_token"
    me = client.get("/api/auth/me", headers={"Authorization": f"Bearer {tokens['id_token']}"})
    assert me.status_code == 401
    assert query("?x=1") == {"x": "1"}


def test_id_tokens_can_be_signed_with_rs256_as_oidc_requires_of_every_provider(doc):
    """OIDC Core 1.0 §15.1 / Discovery 1.0 §3; the ID tokens really are (test_auth_signing_keys)."""
    assert "RS256" in doc["id_token_signing_alg_values_supported"]
