"""One family never affects another: revoking by id (sessions, OAuth grants, API keys share the ``sid`` namespace
of the gateway's denylist) denylists nothing unless the caller owns what it names (issue 15, item 1)."""

import jwt
from auth_support import TEST_REDIS_URL, assert_problem
from storyverse_auth.redis_topology import client_for
from storyverse_contracts.keys import revoked_sid_key
from test_auth_oauth_kit import oauth_kit, pkce


def _sid(access_token: str) -> str:
    return jwt.decode(access_token, options={"verify_signature": False})["sid"]


def _assert_not_denylisted(sid: str) -> None:
    assert not client_for(TEST_REDIS_URL).exists(revoked_sid_key(sid))


def test_deleting_another_familys_session_leaves_the_victims_tokens_working(client, auth):
    attacker, victim = auth.tokens("mallory@example.com"), auth.tokens("victim@example.com")
    response = client.delete(f"/api/auth/sessions/{victim['session_id']}", headers=auth.bearer(attacker))
    assert_problem(response, 404, "session_not_found")
    _assert_not_denylisted(victim["session_id"])
    assert client.get("/api/auth/me", headers=auth.bearer(victim)).status_code == 200
    successor = client.post("/api/auth/refresh", json={"refresh_token": victim["refresh_token"]}).get_json()
    assert client.get("/api/auth/me", headers=auth.bearer(successor)).status_code == 200


def test_deleting_another_familys_api_key_id_as_a_session_denylists_nothing(client, auth, family):
    attacker, victim = auth.tokens("mallory@example.com"), family.parent("victim@example.com")
    body = {"name": "app", "scopes": ["stories:read"], "plan": "family"}
    key = client.post("/api/auth/api-keys", json=body, headers=family.headers(victim)).get_json()
    response = client.delete(f"/api/auth/sessions/{key['id']}", headers=auth.bearer(attacker))
    assert_problem(response, 404, "session_not_found")
    _assert_not_denylisted(key["id"])
    exchanged = client.post("/api/auth/api-keys/token", json={}, headers={"Authorization": f"ApiKey {key['key']}"})
    assert exchanged.status_code == 200 and _sid(exchanged.get_json()["access_token"]) == key["id"]


def test_deleting_another_familys_oauth_grant_id_as_a_session_denylists_nothing(app, client, auth, family):
    oauth = oauth_kit(app, client, auth, family)
    client_id, _ = oauth.register("public")
    verifier, challenge = pkce()
    granted = oauth.exchange(oauth.approve(oauth.params(client_id, challenge)), client_id, verifier).get_json()
    grant_id = _sid(granted["access_token"])
    attacker = auth.tokens("mallory@example.com")
    response = client.delete(f"/api/auth/sessions/{grant_id}", headers=auth.bearer(attacker))
    assert_problem(response, 404, "session_not_found")
    _assert_not_denylisted(grant_id)
    assert oauth.refresh(granted["refresh_token"], client_id).status_code == 200


def test_an_own_unknown_id_denylists_nothing(client, auth):
    tokens = auth.tokens()
    unknown = "0c2f3b52-6d1e-4d6e-9a55-3b8f2f6a9b10"
    assert_problem(
        client.delete(f"/api/auth/sessions/{unknown}", headers=auth.bearer(tokens)), 404, "session_not_found"
    )
    _assert_not_denylisted(unknown)
