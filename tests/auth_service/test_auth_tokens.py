"""RFC 9068 access tokens, signing keys at rest, rotation, JWKS and discovery; forged tokens are rejected."""

import base64
import hashlib
import hmac
import json

import jwt
import pytest
from auth_support import assert_problem
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from storyverse_auth.extensions import db
from storyverse_auth.models import SigningKey
from storyverse_auth.secrets_box import KeyEncryptionError, decrypt
from storyverse_auth.tokens import signing


def _jwks(client) -> dict:
    response = client.get("/.well-known/jwks.json")
    assert response.status_code == 200
    assert "max-age" in response.headers["Cache-Control"]
    return response.get_json()


def _verify(client, token: str) -> dict:
    header = jwt.get_unverified_header(token)
    keys = {k["kid"]: k for k in _jwks(client)["keys"]}
    public = jwt.PyJWK(keys[header["kid"]]).key
    return jwt.decode(token, public, algorithms=["ES256"], audience="storyverse-api", issuer="http://localhost:8000")


def test_access_token_is_rfc9068(client, auth):
    tokens = auth.tokens()
    header = jwt.get_unverified_header(tokens["access_token"])
    assert header["typ"] == "at+jwt" and header["alg"] == "ES256" and header["kid"]
    claims = _verify(client, tokens["access_token"])
    assert {"iss", "aud", "sub", "exp", "iat", "nbf", "jti", "role", "family_id", "tier", "tz"} <= set(claims)
    assert claims["exp"] - claims["iat"] == 600
    assert (claims["role"], claims["tier"], claims["tz"]) == ("parent", "basic", "Europe/Paris")
    assert claims["sid"] == tokens["session_id"]


def test_jwks_has_no_private_members(client, auth):
    auth.tokens()
    keys = _jwks(client)["keys"]
    assert sorted(key["alg"] for key in keys) == ["ES256", "ES256", "RS256", "RS256"]  # active + next of each
    for key in keys:
        assert not set(key) & {"d", "p", "q", "dp", "dq", "qi", "k", "oth"}
        assert key["use"] == "sig"


def test_discovery_issuer_matches_tokens(client, auth):
    doc = client.get("/.well-known/openid-configuration").get_json()
    tokens = auth.tokens()
    assert doc["issuer"] == _verify(client, tokens["access_token"])["iss"]
    assert doc["jwks_uri"].endswith("/.well-known/jwks.json")


def test_private_keys_are_encrypted_at_rest(app, auth):
    auth.tokens()
    with app.app_context():
        key = db.session.scalar(db.select(SigningKey).where(SigningKey.state == "active"))
        assert b"PRIVATE KEY" not in key.private_key_encrypted
        assert b"PRIVATE KEY" in decrypt(key.private_key_encrypted, key.kid.encode())
        with pytest.raises(KeyEncryptionError):
            decrypt(key.private_key_encrypted, b"another-kid")
        app.config["KEY_ENCRYPTION_KEY"] = base64.b64encode(b"k" * 32).decode()
        with pytest.raises(KeyEncryptionError):
            decrypt(key.private_key_encrypted, key.kid.encode())


@pytest.mark.usefixtures("fresh_signing_keys")
def test_rotation_publishes_next_before_it_signs_and_keeps_previous(app, client, auth, runner, clock):
    old_tokens = auth.tokens()
    before = {k["kid"] for k in _jwks(client)["keys"]}
    with app.app_context():
        query = db.select(SigningKey.algorithm, SigningKey.kid).where(SigningKey.state == "next")
        nexts = dict(db.session.execute(query).all())
    next_kid = nexts["ES256"]
    assert set(nexts.values()) <= before  # published before they ever sign
    result = runner.invoke(args=["keys", "rotate"])
    assert result.exit_code == 0 and "ES256 retired=" in result.output and f"active={next_kid}" in result.output
    assert f"active={nexts['RS256']}" in result.output  # the ID-token key rotates too
    after = {k["kid"] for k in _jwks(client)["keys"]}
    old_kid = jwt.get_unverified_header(old_tokens["access_token"])["kid"]
    assert old_kid in after and next_kid in after and len(after) == 6  # retired, active and next of both
    new_tokens = auth.tokens()
    assert jwt.get_unverified_header(new_tokens["access_token"])["kid"] == next_kid
    assert client.get("/api/auth/me", headers=auth.bearer(old_tokens)).status_code == 200  # old tokens still verify
    clock.advance(600 + signing.PUBLISH_LEEWAY_SECONDS + 1)
    assert old_kid not in {k["kid"] for k in _jwks(client)["keys"]}  # gone once its tokens expired
    assert "pruned=2" in runner.invoke(args=["keys", "prune"]).output  # the retired ES256 and RS256 keys


def test_keys_ensure_is_idempotent(runner):
    runner.invoke(args=["keys", "ensure"])
    assert "keys present" in runner.invoke(args=["keys", "ensure"]).output
    listing = runner.invoke(args=["keys", "list"]).output
    assert " active " in listing and " next " in listing


@pytest.mark.usefixtures("fresh_signing_keys")
def test_changing_the_algorithm_keeps_every_published_key_valid(app, client, auth, runner):
    """JWT_ALGORITHM picks the key that signs access tokens; every key keeps its algorithm. ES256 → RS256: the RS256
    key (published: it signs ID tokens) signs access tokens at once, the rotation retires the ES256 keys, and tokens
    signed before, during and after the change all verify; the discovery document lists what is published."""
    before = auth.tokens()
    app.config["JWT_ALGORITHM"] = "RS256"
    during = auth.tokens()
    header = jwt.get_unverified_header(during["access_token"])
    assert header["alg"] == "RS256" and header["kid"] in {k["kid"] for k in _jwks(client)["keys"]}
    doc = client.get("/.well-known/openid-configuration").get_json()
    assert doc["id_token_signing_alg_values_supported"] == ["RS256"]
    assert doc["access_token_signing_alg_values_supported"] == ["RS256", "ES256"]  # the ES256 key signed `before`
    rotated = runner.invoke(args=["keys", "rotate"])
    assert rotated.exit_code == 0 and "ES256 retired=" in rotated.output and "active=-" in rotated.output
    after = auth.tokens()
    assert jwt.get_unverified_header(after["access_token"])["alg"] == "RS256"
    for tokens in (before, during, after):  # the service's own bearer check follows each key's algorithm
        assert client.get("/api/auth/me", headers=auth.bearer(tokens)).status_code == 200
    published = {k["kid"] for k in _jwks(client)["keys"]}
    assert {jwt.get_unverified_header(t["access_token"])["kid"] for t in (before, during, after)} <= published
    doc = client.get("/.well-known/openid-configuration").get_json()
    assert doc["access_token_signing_alg_values_supported"] == ["RS256", "ES256"]
    header = jwt.get_unverified_header(before["access_token"])
    claims = jwt.decode(before["access_token"], options={"verify_signature": False})
    with app.app_context():
        active = signing.active_key()
    # an RS256 signature under the ES256 key's kid: refused (a key verifies only its own algorithm)
    mixed = jwt.encode(claims, active.private_key, algorithm="RS256", headers={**header, "alg": "RS256"})
    assert client.get("/api/auth/me", headers={"Authorization": f"Bearer {mixed}"}).status_code == 401


@pytest.mark.parametrize("algorithm", ["RS256", "EdDSA"])
def test_other_algorithms_are_configurable(app, client, auth, algorithm):
    app.config["JWT_ALGORITHM"] = algorithm
    with app.app_context():
        db.session.execute(db.delete(SigningKey))
        db.session.commit()
        signing.clear_cache()
    tokens = auth.tokens()
    assert jwt.get_unverified_header(tokens["access_token"])["alg"] == algorithm
    assert client.get("/api/auth/me", headers=auth.bearer(tokens)).status_code == 200
    with app.app_context():
        db.session.execute(db.delete(SigningKey))
        db.session.commit()
        signing.clear_cache()


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _forge(tokens: dict, header_patch: dict | None = None, claims_patch: dict | None = None, key=None, alg=None):
    header = jwt.get_unverified_header(tokens["access_token"])
    claims = jwt.decode(tokens["access_token"], options={"verify_signature": False})
    header.update(header_patch or {})
    claims.update(claims_patch or {})
    if alg == "none":
        return f"{_b64(header)}.{_b64(claims)}."
    if alg == "HS256":  # PyJWT refuses to build this confusion token, so sign by hand
        signing_input = f"{_b64(header)}.{_b64(claims)}"
        mac = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
        return f"{signing_input}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"
    return jwt.encode(claims, key, algorithm=alg or header["alg"], headers=header)


def test_forged_tokens_are_rejected(app, client, auth, clock):
    tokens = auth.tokens()
    attacker = ec.generate_private_key(ec.SECP256R1())  # the same algorithm as the service's default keys
    public_pem = attacker.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    kid = jwt.get_unverified_header(tokens["access_token"])["kid"]
    with app.app_context():
        active_public = signing.public_key(kid)[1]
    real_pem = active_public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    forged = {
        "alg none": _forge(tokens, {"alg": "none"}, alg="none"),
        "attacker key": _forge(tokens, key=attacker),
        "unknown kid": _forge(tokens, {"kid": "../../dev/null"}, key=attacker),
        "hs256 with public key": _forge(tokens, {"alg": "HS256"}, key=real_pem, alg="HS256"),
        "no typ": _forge(tokens, {"typ": "JWT"}, key=attacker),
        "tampered claims": tokens["access_token"].split(".")[0]
        + "."
        + _b64({**jwt.decode(tokens["access_token"], options={"verify_signature": False}), "role": "admin"})
        + "."
        + tokens["access_token"].split(".")[2],
    }
    del public_pem
    for name, token in forged.items():
        response = client.get("/api/auth/me", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 401, name
    clock.advance(600 + 31)
    assert_problem(client.get("/api/auth/me", headers=auth.bearer(tokens)), 401, "token_expired")


def test_wrong_audience_and_issuer_are_rejected(app, client, auth):
    tokens = auth.tokens()
    app.config["AUDIENCE"] = "another-api"
    assert client.get("/api/auth/me", headers=auth.bearer(tokens)).status_code == 401
    app.config["AUDIENCE"] = "storyverse-api"
    app.config["ISSUER"] = "http://localhost:8000.evil"
    assert client.get("/api/auth/me", headers=auth.bearer(tokens)).status_code == 401


def test_answers_holding_tokens_are_never_cached(client, auth):
    """RFC 6749 §5.1: Cache-Control: no-store on every answer with tokens (and by default on every other); the
    public key documents keep their own caching."""
    tokens = auth.tokens()
    refreshed = client.post("/api/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert refreshed.status_code == 200 and refreshed.headers["Cache-Control"] == "no-store"
    login = client.post("/api/auth/login", json={"email": "nobody@example.com", "password": "wrong password here"})
    assert login.status_code == 401 and login.headers["Cache-Control"] == "no-store"
    assert client.get("/api/auth/me", headers=auth.bearer(tokens)).headers["Cache-Control"] == "no-store"
    assert "max-age" in client.get("/.well-known/jwks.json").headers["Cache-Control"]
