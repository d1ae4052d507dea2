"""The client registry: `flask oauth-clients create|list|rotate-secret|disable` and the admin endpoints.
Secrets are shown once and stored only as an HMAC."""

from __future__ import annotations

import json

import pytest
from auth_support import assert_problem
from sqlalchemy import select
from storyverse_auth.extensions import db
from storyverse_auth.oauth.models import OAuthClient
from test_auth_oauth_kit import REDIRECT, oauth_error, oauth_kit


@pytest.fixture
def oauth(app, client, auth, family):
    return oauth_kit(app, client, auth, family)


def _cli(app, *args: str):
    result = app.test_cli_runner().invoke(args=["oauth-clients", *args])
    assert result.exit_code == 0, result.output
    return result.output


def test_cli_create_list_rotate_disable(app, oauth):
    created = json.loads(
        _cli(
            app, "create", "--name", "Partner", "--type", "confidential", "--grant-type", "client_credentials", "--json"
        )
    )
    client_id, secret = created["client_id"], created["client_secret"]
    assert secret.startswith("svcs_") and created["grant_types"] == ["client_credentials"]
    with app.app_context():
        row = db.session.scalar(select(OAuthClient).where(OAuthClient.client_id == client_id))
        assert row.secret_hash and secret not in row.secret_hash and len(row.secret_hash) == 64
    listed = _cli(app, "list")
    assert client_id in listed and secret not in listed
    assert oauth.token({"grant_type": "client_credentials"}, client_id, secret).status_code == 200
    rotated = json.loads(_cli(app, "rotate-secret", client_id, "--json"))["client_secret"]
    assert rotated != secret
    assert oauth_error(oauth.token({"grant_type": "client_credentials"}, client_id, secret)) == "invalid_client"
    assert oauth.token({"grant_type": "client_credentials"}, client_id, rotated).status_code == 200
    _cli(app, "disable", client_id)
    assert "disabled" in _cli(app, "list")
    assert oauth_error(oauth.token({"grant_type": "client_credentials"}, client_id, rotated)) == "invalid_client"
    public = _cli(app, "create", "--name", "Reader app", "--type", "public", "--redirect-uri", REDIRECT)
    assert "client_secret: None" in public and "grant_types: authorization_code refresh_token" in public


def test_cli_refuses_bad_definitions(app):
    runner = app.test_cli_runner()
    for args in (
        ["create", "--name", "X", "--type", "public", "--grant-type", "client_credentials"],
        ["create", "--name", "X", "--type", "public", "--redirect-uri", "http://evil.example.com/cb"],
        ["create", "--name", "X", "--type", "public"],  # code flow without a redirect URI
        ["rotate-secret", "svc_unknown"],
    ):
        result = runner.invoke(args=["oauth-clients", *args])
        assert result.exit_code != 0, args


def test_admin_endpoints(oauth, client, auth):
    parent = auth.tokens("parent@example.com")
    body = {"client_name": "Story Partner", "client_type": "confidential", "grant_types": ["client_credentials"]}
    assert_problem(client.post("/api/auth/oauth/clients", json=body, headers=auth.bearer(parent)), 403, "admin_only")
    assert_problem(client.get("/api/auth/oauth/clients"), 401, "invalid_token")
    admin = auth.bearer(oauth.make_admin())
    created = client.post("/api/auth/oauth/clients", json=body, headers=admin)
    assert created.status_code == 201, created.get_json()
    client_id, secret = created.get_json()["client_id"], created.get_json()["client_secret"]
    listed = client.get("/api/auth/oauth/clients", headers=admin).get_json()["clients"]
    assert [c["client_id"] for c in listed] == [client_id] and "client_secret" not in listed[0]
    rotated = client.post(f"/api/auth/oauth/clients/{client_id}/secret", headers=admin).get_json()["client_secret"]
    assert rotated != secret
    assert oauth.token({"grant_type": "client_credentials"}, client_id, rotated).status_code == 200
    disabled = client.post(f"/api/auth/oauth/clients/{client_id}/disable", headers=admin)
    assert disabled.status_code == 200 and disabled.get_json()["disabled"] is True
    assert oauth_error(oauth.token({"grant_type": "client_credentials"}, client_id, rotated)) == "invalid_client"
    assert_problem(client.post("/api/auth/oauth/clients/svc_nope/disable", headers=admin), 404, "client_not_found")
    bad = {"client_name": "X", "client_type": "public", "grant_types": ["authorization_code"], "redirect_uris": []}
    assert_problem(client.post("/api/auth/oauth/clients", json=bad, headers=admin), 422, "invalid_client_metadata")
    public = client.post(
        "/api/auth/oauth/clients",
        json={**bad, "redirect_uris": [REDIRECT]},
        headers=admin,
    ).get_json()
    assert public["client_secret"] is None and public["token_endpoint_auth_method"] == "none"
    assert_problem(
        client.post(f"/api/auth/oauth/clients/{public['client_id']}/secret", headers=admin), 409, "public_client"
    )
