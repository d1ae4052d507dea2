"""Signing keys per algorithm (docs/architecture.md §4): access tokens in JWT_ALGORITHM (ES256 by default), OIDC ID
tokens always in RS256 (OIDC Core 1.0 §15.1), each algorithm with its own active and next key; rotation rotates
both; a new JWT_ALGORITHM signs only with a key published by an earlier rotation, and the discovery document's
access_token_signing_alg_values_supported lists the algorithms of the published keys that sign access tokens."""

from __future__ import annotations

import jwt
import pytest
from storyverse_auth.extensions import db
from storyverse_auth.models import SigningKey
from storyverse_auth.tokens import signing
from test_auth_oauth_kit import oauth_kit, unverified

pytestmark = pytest.mark.usefixtures("fresh_signing_keys")


@pytest.fixture
def oauth(app, client, auth, family):
    return oauth_kit(app, client, auth, family)


def _jwks(client) -> dict[str, dict]:
    return {k["kid"]: k for k in client.get("/.well-known/jwks.json").get_json()["keys"]}


def _access_algorithms(client) -> list[str]:
    return client.get("/.well-known/openid-configuration").get_json()["access_token_signing_alg_values_supported"]


def _live(app) -> dict[tuple[str, str], str]:
    with app.app_context():
        rows = db.session.execute(db.select(SigningKey.algorithm, SigningKey.state, SigningKey.kid))
        return {(algorithm, state): kid for algorithm, state, kid in rows if state != "retired"}


def test_id_token_is_rs256_with_a_published_kid_and_the_access_token_es256(oauth, client):
    public, _ = oauth.register("public")
    tokens = oauth.tokens(public)
    header, claims = unverified(tokens["id_token"])
    assert header["alg"] == "RS256" and header["typ"] == "JWT"
    jwk = _jwks(client)[header["kid"]]
    assert jwk["alg"] == "RS256" and jwk["kty"] == "RSA"
    verified = jwt.decode(tokens["id_token"], jwt.PyJWK.from_dict(jwk), algorithms=["RS256"], audience=public)
    assert verified["sub"] == claims["sub"]
    access_header = unverified(tokens["access_token"])[0]
    assert (access_header["alg"], access_header["typ"]) == ("ES256", "at+jwt")
    assert _jwks(client)[access_header["kid"]]["alg"] == "ES256"
    doc = client.get("/.well-known/openid-configuration").get_json()
    assert doc["id_token_signing_alg_values_supported"] == ["RS256"]
    assert doc["access_token_signing_alg_values_supported"] == ["ES256"]  # the RS256 key signs only ID tokens


def test_rotation_rotates_the_keys_of_both_algorithms(app, client, auth, runner):
    auth.tokens()
    runner.invoke(args=["keys", "ensure"])
    before = _live(app)
    assert set(before) == {(a, s) for a in ("ES256", "RS256") for s in ("active", "next")}
    result = runner.invoke(args=["keys", "rotate"])
    assert result.exit_code == 0, result.output
    after = _live(app)
    for algorithm in ("ES256", "RS256"):
        line = f"{algorithm} retired={before[algorithm, 'active']} active={before[algorithm, 'next']}"
        assert line in result.output
        assert after[algorithm, "active"] == before[algorithm, "next"]  # the published next key, promoted
        assert after[algorithm, "next"] not in before.values()
    published = _jwks(client)
    assert set(before.values()) | set(after.values()) <= set(published)  # retired ones stay published
    listing = runner.invoke(args=["keys", "list"]).output
    assert f"{after['ES256', 'active']} ES256 active signs=access" in listing
    assert f"{after['RS256', 'active']} RS256 active signs=id" in listing


def test_a_new_access_algorithm_signs_only_once_published(app, client, auth, runner, clock):
    """ES256 → EdDSA: `keys ensure` publishes an EdDSA next key while ES256 keeps signing; the rotation promotes
    it and retires the ES256 keys, which stay published until their tokens have expired."""
    before = auth.tokens()
    app.config["JWT_ALGORITHM"] = "EdDSA"
    assert "created keys" in runner.invoke(args=["keys", "ensure"]).output
    live = _live(app)
    assert ("EdDSA", "next") in live and ("EdDSA", "active") not in live
    during = auth.tokens()
    assert unverified(during["access_token"])[0]["alg"] == "ES256"  # the EdDSA key was not published yet
    assert live["EdDSA", "next"] in _jwks(client)
    assert _access_algorithms(client) == ["ES256", "EdDSA"]
    result = runner.invoke(args=["keys", "rotate"])
    assert f"EdDSA retired=- active={live['EdDSA', 'next']}" in result.output
    assert f"ES256 retired={live['ES256', 'active']} active=-" in result.output
    after = auth.tokens()
    assert unverified(after["access_token"])[0]["kid"] == live["EdDSA", "next"]
    for tokens in (before, during, after):
        assert client.get("/api/auth/me", headers=auth.bearer(tokens)).status_code == 200
    assert _access_algorithms(client) == ["EdDSA", "ES256"]
    clock.advance(600 + signing.PUBLISH_LEEWAY_SECONDS + 1)
    assert {k["alg"] for k in _jwks(client).values()} == {"EdDSA", "RS256"}
    assert _access_algorithms(client) == ["EdDSA"]


def test_leaving_rs256_for_access_tokens_unlists_it_once_its_access_tokens_expired(app, client, auth, runner, clock):
    """RS256 → ES256: the RS256 key keeps signing access tokens until the ES256 key is published and promoted;
    RS256 stays in access_token_signing_alg_values_supported while a key that signed access tokens is published."""
    app.config["JWT_ALGORITHM"] = "RS256"
    rs256 = auth.tokens()
    assert _access_algorithms(client) == ["RS256"]
    app.config["JWT_ALGORITHM"] = "ES256"
    runner.invoke(args=["keys", "ensure"])
    assert unverified(auth.tokens()["access_token"])[0]["alg"] == "RS256"
    runner.invoke(args=["keys", "rotate"])
    assert unverified(auth.tokens()["access_token"])[0]["alg"] == "ES256"
    assert _access_algorithms(client) == ["ES256", "RS256"]
    assert client.get("/api/auth/me", headers=auth.bearer(rs256)).status_code == 200
    clock.advance(600 + signing.PUBLISH_LEEWAY_SECONDS + 1)
    runner.invoke(args=["keys", "rotate"])
    assert "RS256" in {k["alg"] for k in _jwks(client).values()}  # the ID-token keys
    assert _access_algorithms(client) == ["ES256"]
