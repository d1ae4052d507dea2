"""sv-jwt end to end with REAL tokens: client → emulator (strict) → sv-jwt plugin server → sample backend's /__echo.

Tokens come from the running auth service (register + login over HTTP; its JWKS, through a counting proxy; its Redis
db for the denylist). An expired token is a genuine one from a second auth-service process on the same database
with ACCESS_TOKEN_TTL=1. Where the auth service will not issue the token an attack needs (nbf in the future, crit,
another typ, an embedded jwk...), the token is signed with the auth service's own active key (test_jwt_real_kit):
its signature is valid, so the claim or header under test is the only reason it can be refused.

One emulator serves every route (each a different sv-jwt config in the same plugin server), so the module costs one
emulator start. What the backend received is read from its echo.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import jwt
import pytest
import redis
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from e2e_support import AUTH_DIR, KongGateway, auth_env, repo_plugin
from jwt.algorithms import RSAAlgorithm
from kong_emulator.testing import free_port, wait_port
from storyverse_contracts.keys import revoked_jti_key, revoked_sid_key
from test_jwt_real_kit import (
    Account,
    CountingProxy,
    FakeRedis,
    Listener,
    b64url,
    dead_port,
    sign_with_auth_service_key,
    unverified,
)

AUDIENCE = "storyverse-api"
FLOOD_INTERVAL = 2  # jwks_refresh_min_interval of the /flood route, seconds
ROUTES = ("p", "pub", "aud", "iss", "strict-time", "flood", "cold", "garbage")
ROUTES += ("redis-down", "redis-bogus", "redis-broken")


def sv_jwt(jwks_url: str, issuer: str, redis_db: int, **extra) -> str:
    config = {"jwks_url": jwks_url, "issuer": issuer, "audience": AUDIENCE, "redis_database": redis_db, **extra}
    return json.dumps({"name": "sv-jwt", "config": config})


def kong_yml(backend_url: str, configs: dict[str, str]) -> str:
    routes = "".join(
        f'      - name: r-{name}\n        paths: ["/{name}"]\n        plugins: [{configs[name]}]\n' for name in ROUTES
    )
    return f'_format_version: "3.0"\nservices:\n  - name: echo\n    url: {backend_url}/__echo\n    routes:\n{routes}'


@pytest.fixture(scope="module")
def env(auth_service, backend):
    """The proxies, fakes, one emulator with every route, and the denylist's Redis."""
    issuer, db = auth_service["issuer"], auth_service["redis_db"]
    main, flood, cold = (CountingProxy(auth_service["jwks_url"]) for _ in range(3))
    cold.mode = "down"
    garbage = CountingProxy(auth_service["jwks_url"], "garbage")
    # Every shape of garbage at once is not possible: the document mixes entries parse_jwks must skip (an alg that
    # is a list once raised TypeError) with nothing usable, so the route never gets a key.
    garbage.garbage = json.dumps(
        {"keys": [{"kty": "RSA", "kid": "x", "alg": ["RS256"], "n": "AQAB", "e": "AQAB"}, {"kty": ["RSA"]}, 7, None]}
    ).encode()
    fake_redis, broken_redis, listener = FakeRedis(), FakeRedis(hello_ok=False), Listener()
    configs = {
        "p": sv_jwt(main.url, issuer, db),
        "pub": sv_jwt(main.url, issuer, db, anonymous=True),
        "aud": sv_jwt(main.url, issuer, db, audience="another-api"),
        "iss": sv_jwt(main.url, "http://evil.test", db),
        "strict-time": sv_jwt(main.url, issuer, db, leeway=0),
        "flood": sv_jwt(flood.url, issuer, db, jwks_refresh_min_interval=FLOOD_INTERVAL),
        "cold": sv_jwt(cold.url, issuer, db),
        "garbage": sv_jwt(garbage.url, issuer, db),
        "redis-down": sv_jwt(main.url, issuer, db, redis_port=dead_port(), denylist_fault_tolerant=False),
        "redis-bogus": sv_jwt(main.url, issuer, 0, redis_port=fake_redis.port, denylist_cache_ms=0),
        "redis-broken": sv_jwt(main.url, issuer, 0, redis_port=broken_redis.port, denylist_cache_ms=0),
    }
    gw = KongGateway(kong_yml(backend["stories"], configs), [repo_plugin("sv-jwt")]).start()
    try:
        yield {
            "gw": gw,
            "url": gw.url,
            "auth": auth_service,
            "main": main,
            "flood": flood,
            "cold": cold,
            "garbage": garbage,
            "fake_redis": fake_redis,
            "broken_redis": broken_redis,
            "listener": listener,
            "redis": redis.Redis(db=db),
        }
    finally:
        failures = gw.strict_failures()
        gw.stop()
        for server in (main, flood, cold, garbage, fake_redis, broken_redis, listener):
            server.close()
        assert not failures, "plugin protocol failures in strict mode:\n" + "\n".join(failures)


@pytest.fixture(scope="module")
def account(env):
    return Account(env["auth"]["url"])


@pytest.fixture(scope="module")
def login(account):
    """A real login: {access_token, refresh_token, session_id, ...}."""
    return account.login()


@pytest.fixture(scope="module")
def claims(login):
    return unverified(login["access_token"])[1]


@pytest.fixture(scope="module")
def jwks(env):
    return requests.get(env["auth"]["jwks_url"], timeout=10).json()


def call(env, route: str, token: str | None = None, headers: dict | None = None) -> requests.Response:
    sent = dict(headers or {})
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    return requests.get(f"{env['url']}/{route}", headers=sent, timeout=10)


def assert_401(resp: requests.Response) -> None:
    assert resp.status_code == 401, (resp.status_code, resp.text)
    assert resp.headers["Content-Type"] == "application/problem+json"
    assert resp.headers["WWW-Authenticate"].startswith('Bearer realm="storyverse", error="invalid_token"')
    body = resp.json()
    assert body["status"] == 401 and body["code"] in ("invalid_token", "token_expired")
    assert "request" not in body  # a problem document from sv-jwt, never the backend's echo


# --- the happy path with a real token ------------------------------------------------------------------------------


def test_a_real_token_reaches_the_backend_with_its_verified_identity(env, login, claims):
    resp = call(env, "p", login["access_token"])
    assert resp.status_code == 200, resp.text
    received = resp.json()["request"]["headers"]
    assert received["X-User-Id"] == claims["sub"] and received["X-User-Role"] == "parent"
    assert received["X-Family-Id"] == claims["family_id"] and received["X-Account-Tier"] == claims["tier"]


# --- each attack → 401 ---------------------------------------------------------------------------------------------


def resign_hs256(header: dict, payload: dict, secret: bytes) -> str:
    signing_input = f"{b64url(header)}.{b64url(payload)}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(signature)}"


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
def test_alg_none_in_every_spelling_is_401(env, login, alg):
    header, payload = unverified(login["access_token"])
    for signature in ("", login["access_token"].rsplit(".", 1)[1]):
        assert_401(call(env, "p", f"{b64url({**header, 'alg': alg})}.{b64url(payload)}.{signature}"))


def test_null_and_broken_signatures_are_401(env, login):
    token = login["access_token"]
    head_body = token.rsplit(".", 1)[0]
    for forged in (head_body + ".", head_body + "." + b64url(bytes(256)), token[:-4], head_body + ".AAAA"):
        assert_401(call(env, "p", forged))


def test_hs256_signed_with_the_real_public_key_is_401(env, login, jwks):
    """Algorithm confusion: the real JWKS key (ES256 by default, RSA when so configured) as an HMAC secret, in each
    form a confused verifier might use."""
    header, payload = unverified(login["access_token"])
    jwk = next(k for k in jwks["keys"] if k["kid"] == header["kid"])
    public = jwt.PyJWK(jwk).key
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    secrets = [
        public.public_bytes(serialization.Encoding.PEM, spki),
        public.public_bytes(serialization.Encoding.DER, spki),
        json.dumps(jwk).encode(),
    ]
    if jwk["kty"] == "RSA":
        secrets += [
            public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.PKCS1),
            jwk["n"].encode(),
        ]
    else:  # EC: the point as X9.62 bytes and the coordinates as published
        point = public.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
        secrets += [point, jwk["x"].encode(), jwk["y"].encode()]
    for secret in secrets:
        assert_401(call(env, "p", resign_hs256({**header, "alg": "HS256"}, payload, secret)))


def test_embedded_jwk_is_401_whoever_signed(env, login, claims):
    """The attack (an attacker key carried in the token) and the same header on a token the real key signed."""
    attacker = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = {**json.loads(RSAAlgorithm.to_jwk(attacker.public_key())), "kid": "attacker"}
    header, payload = unverified(login["access_token"])
    signing_input = f"{b64url({**header, 'kid': 'attacker', 'jwk': jwk})}.{b64url(payload)}"
    signature = RSAAlgorithm(RSAAlgorithm.SHA256).sign(signing_input.encode(), attacker)
    assert_401(call(env, "p", f"{signing_input}.{b64url(signature)}"))
    (real_signed,) = sign_with_auth_service_key(
        env["auth"]["issuer"], env["auth"]["redis_db"], [{"header": {"jwk": jwk}, "claims": claims}]
    )
    assert_401(call(env, "p", real_signed))


@pytest.fixture(scope="module")
def minted(env, claims):
    """Attack tokens signed by the auth service's real active key (one subprocess for all of them)."""
    now = int(time.time())
    listener = env["listener"].url
    fresh = {**claims, "iat": now, "nbf": now, "exp": now + 600}
    items = {
        "control": ({}, fresh),
        "jku": ({"jku": f"{listener}/jwks.json"}, fresh),
        "x5u": ({"x5u": f"{listener}/cert.pem"}, fresh),
        "x5c": ({"x5c": ["MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"]}, fresh),
        "crit": ({"crit": ["exp"], "exp": now + 600}, fresh),
        "crit-empty": ({"crit": []}, fresh),
        "nbf-future": ({}, {**fresh, "nbf": now + 3600}),
        "iat-future": ({}, {**fresh, "iat": now + 3600, "nbf": now}),
        "expired": ({}, {**fresh, "iat": now - 700, "nbf": now - 700, "exp": now - 100}),
        "typ-jwt": ({"typ": "JWT"}, fresh),  # what an ID token carries
        "typ-missing": ({"typ": None}, fresh),
        "typ-refresh": ({"typ": "refresh+jwt"}, fresh),
        "id-token": ({"typ": "JWT"}, {**fresh, "aud": "storyverse", "nonce": "n-1", "auth_time": now}),
        "reset-token": ({"typ": "reset+jwt"}, {**fresh, "purpose": "password_reset"}),
        "kid-unknown": ({"kid": "rotated-away-" + uuid.uuid4().hex[:8]}, fresh),
        "kid-traversal": ({"kid": "../../../../../../dev/null"}, fresh),
        "aud-other": ({}, {**fresh, "aud": "another-api"}),
        "aud-list-other": ({}, {**fresh, "aud": ["another-api", "storyverse-api-x"]}),
        "iss-prefix": ({}, {**fresh, "iss": claims["iss"] + ".evil"}),
        "missing-jti": ({}, {k: v for k, v in fresh.items() if k != "jti"}),
        "oversized": ({}, {**fresh, "pad": "x" * 9000}),
    }
    names = list(items)
    tokens = sign_with_auth_service_key(
        env["auth"]["issuer"], 5, [{"header": items[n][0], "claims": items[n][1]} for n in names]
    )
    return dict(zip(names, tokens, strict=True))


@pytest.fixture(scope="module")
def minted_rs256(env, claims):
    """Tokens signed by the auth service's RS256 key, the one that signs ID tokens (published in the JWKS)."""
    now = int(time.time())
    fresh = {**claims, "iat": now, "nbf": now, "exp": now + 600}
    id_claims = {"iss": claims["iss"], "sub": claims["sub"], "aud": "a-client", "iat": now, "exp": now + 600}
    items = {
        "control": ({}, fresh),  # an at+jwt for this API: the key is the service's own, per-key pinned
        "id-token": ({"typ": "JWT"}, {**id_claims, "auth_time": now, "nonce": "n-1"}),  # as oauth/issue.py signs
        "id-token-as-at": ({}, {**fresh, "aud": "a-client"}),  # typ forged to at+jwt: the audience still differs
        "id-token-typ-only": ({"typ": "JWT"}, fresh),  # every access claim, but the ID token's typ
    }
    names = list(items)
    tokens = sign_with_auth_service_key(
        env["auth"]["issuer"], 5, [{"header": items[n][0], "claims": items[n][1]} for n in names], "RS256"
    )
    return dict(zip(names, tokens, strict=True))


def test_the_rs256_id_token_key_does_not_make_id_tokens_access_tokens(env, jwks, minted_rs256):
    """The JWKS publishes the RS256 key that signs ID tokens; sv-jwt verifies RS256 with it (control) but refuses an
    ID token by its typ (JWT) and its audience (the client), each on its own."""
    kid = unverified(minted_rs256["id-token"])[0]["kid"]
    assert next(k for k in jwks["keys"] if k["kid"] == kid)["alg"] == "RS256"
    assert call(env, "p", minted_rs256["control"]).status_code == 200
    for name in ("id-token", "id-token-as-at", "id-token-typ-only"):
        assert_401(call(env, "p", minted_rs256[name]))


def test_the_minting_key_is_really_trusted(env, minted):
    """The control: an unaltered token signed the same way passes, so every 401 below is about its one change."""
    assert call(env, "p", minted["control"]).status_code == 200


@pytest.mark.parametrize("name", ["jku", "x5u", "x5c"])
def test_jku_x5u_x5c_headers_are_401_and_never_fetched(env, minted, name):
    assert_401(call(env, "p", minted[name]))
    assert env["listener"].hits == 0


@pytest.mark.parametrize("name", ["crit", "crit-empty"])
def test_crit_header_is_401(env, minted, name):
    assert_401(call(env, "p", minted[name]))


KID_INJECTIONS = [
    "",
    "../../../../../../dev/null",
    "/dev/null",
    "/invalid_path",
    "x' UNION SELECT '1';--",
    "1' OR '1'='1",
    "|sleep 10",
    "| curl {listener}",
    "$(curl {listener})",
    "`id`",
    "kid; rm -rf /",
    "a" * 300,
]


@pytest.mark.parametrize("kid", KID_INJECTIONS)
def test_kid_path_sql_and_shell_injection_is_401(env, login, kid):
    """jwt_tool's playbook: the kid points at an empty/known key, HS256-signed with that key ("" or "1")."""
    kid = kid.format(listener=env["listener"].url)
    header, payload = unverified(login["access_token"])
    for secret in (b"", b"1"):
        started = time.monotonic()
        assert_401(call(env, "p", resign_hs256({**header, "alg": "HS256", "kid": kid}, payload, secret)))
        assert time.monotonic() - started < 5  # "|sleep 10" did not run
    assert env["listener"].hits == 0


def test_kid_traversal_with_a_valid_rs256_signature_is_401(env, minted):
    assert_401(call(env, "p", minted["kid-traversal"]))


def test_unknown_kid_is_401(env, login, minted):
    header, payload = unverified(login["access_token"])
    signature = login["access_token"].rsplit(".", 1)[1]
    assert_401(call(env, "p", f"{b64url({**header, 'kid': 'no-such-kid'})}.{b64url(payload)}.{signature}"))
    assert_401(call(env, "p", minted["kid-unknown"]))  # validly signed, by a key the JWKS does not publish


def test_nbf_and_iat_in_the_future_are_401(env, minted):
    assert_401(call(env, "p", minted["nbf-future"]))
    assert_401(call(env, "p", minted["iat-future"]))


def test_wrong_audience_is_401(env, login, minted):
    assert_401(call(env, "aud", login["access_token"]))  # a real token at a gateway expecting another audience
    assert_401(call(env, "p", minted["aud-other"]))
    assert_401(call(env, "p", minted["aud-list-other"]))


def test_wrong_issuer_is_401(env, login, minted):
    assert_401(call(env, "iss", login["access_token"]))  # a real token at a gateway expecting another issuer
    assert_401(call(env, "p", minted["iss-prefix"]))


@pytest.mark.parametrize("name", ["typ-jwt", "typ-missing", "typ-refresh", "id-token", "reset-token"])
def test_wrong_typ_is_401(env, minted, name):
    assert_401(call(env, "p", minted[name]))


def test_a_real_refresh_token_used_as_access_token_is_401(env, login):
    assert_401(call(env, "p", login["refresh_token"]))
    assert_401(call(env, "pub", login["refresh_token"]))  # present but invalid: 401 on public routes too


def test_missing_required_claim_is_401(env, minted):
    assert_401(call(env, "p", minted["missing-jti"]))


def test_truncated_tokens_are_401(env, login):
    token = login["access_token"]
    head, body, _ = token.split(".")
    for cut in (head, f"{head}.{body}", token[: len(token) // 2], token[:-1], token + ".", f"{head}..{body}"):
        assert_401(call(env, "p", cut))


def test_tokens_over_8_kib_are_refused_before_the_backend(env, minted, login):
    """Refused at the HTTP layer already: a header line over 8 KiB is a 400, as nginx's default
    large_client_header_buffers (4 8k) makes it in Kong; sv-jwt's own 8 KiB limit (a 401, unit-tested) is the
    backstop for a Kong configured with larger buffers. Either way the token never reaches the backend."""
    header, payload = unverified(login["access_token"])
    forged = f"{b64url(header)}.{b64url({**payload, 'pad': 'y' * 9000})}.{'A' * 342}"
    for token in (minted["oversized"], forged):  # the first one validly signed, just too large
        assert len(token) > 8192
        resp = call(env, "p", token)
        assert resp.status_code in (400, 401), resp.status_code
        assert '"request"' not in resp.text  # not the backend's echo


# --- expiry with a genuinely issued token -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def short_ttl_auth(auth_service):
    """A second auth-service process on the same database and keys, issuing 1-second access tokens."""
    port = free_port()
    env = auth_env("storyverse_e2e", auth_service["redis_db"], auth_service["issuer"], ACCESS_TOKEN_TTL="1")
    argv = [sys.executable, "-m", "gunicorn", "-w", "1", "-b", f"127.0.0.1:{port}", "--chdir", str(AUTH_DIR)]
    proc = subprocess.Popen([*argv, "wsgi:app"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port, proc=proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


def test_an_expired_real_token_is_401_token_expired(env, account, short_ttl_auth, minted):
    # iat is whole seconds (exp = iat + 1): logging in late in a second would leave the token milliseconds to live
    time.sleep(1.02 - time.time() % 1)
    token = account.login(short_ttl_auth)["access_token"]
    payload = unverified(token)[1]
    assert payload["exp"] - payload["iat"] == 1
    assert call(env, "strict-time", token).status_code == 200  # valid while it lives
    time.sleep(max(0.0, payload["exp"] - time.time()) + 0.2)
    resp = call(env, "strict-time", token)  # leeway 0: expired now (also a verified-cache entry must die)
    assert_401(resp)
    assert (
        resp.json()["code"] == "token_expired"
        and 'error_description="token expired"' in resp.headers["WWW-Authenticate"]
    )
    assert call(env, "p", token).status_code == 200  # the default 30 s leeway still accepts it: the leeway is real
    assert_401(call(env, "p", minted["expired"]))  # 100 s past exp: beyond any leeway


# --- revocation: jti and session, each on its own ------------------------------------------------------------------


def poll_until_401(env, token: str, limit: float = 3.0) -> float:
    started = time.monotonic()
    while time.monotonic() - started < limit:
        if call(env, "p", token).status_code == 401:
            return time.monotonic() - started
        time.sleep(0.05)
    raise AssertionError("still accepted")


def test_logout_revokes_the_token_within_the_denylist_cache_time(env, account):
    session = account.login()
    token = session["access_token"]
    assert call(env, "p", token).status_code == 200  # verified, cached, "not revoked" cached
    resp = requests.post(
        f"{env['auth']['url']}/api/auth/logout", headers={"Authorization": f"Bearer {token}"}, timeout=10
    )
    assert resp.status_code == 204
    payload = unverified(token)[1]
    r = env["redis"]
    jti_key, sid_key = revoked_jti_key(payload["jti"], payload["sid"]), revoked_sid_key(payload["sid"])
    assert r.exists(jti_key) and r.exists(sid_key)
    assert poll_until_401(env, token) <= 0.5 + 0.3  # denylist_cache_ms 500 by default, + one poll and a request
    assert_401(call(env, "p", token))
    assert_401(call(env, "pub", token))
    # The jti key alone is enough: drop the session key, the token stays refused.
    r.delete(sid_key)
    time.sleep(0.55)
    assert_401(call(env, "p", token))


def test_a_revoked_session_revokes_its_access_tokens(env, account):
    """DELETE /sessions/{id} from another session writes only the session's key: the token's own jti is not denied."""
    victim, other = account.login(), account.login()
    token = victim["access_token"]
    assert call(env, "p", token).status_code == 200
    resp = requests.delete(
        f"{env['auth']['url']}/api/auth/sessions/{victim['session_id']}",
        headers={"Authorization": f"Bearer {other['access_token']}"},
        timeout=10,
    )
    assert resp.status_code == 204, resp.text
    payload = unverified(token)[1]
    assert not env["redis"].exists(revoked_jti_key(payload["jti"], payload["sid"]))
    assert poll_until_401(env, token) <= 0.8
    assert call(env, "p", other["access_token"]).status_code == 200  # the other session lives on


# --- JWKS refetch rate under a flood of random kids ----------------------------------------------------------------


def test_a_flood_of_random_kids_refetches_the_jwks_at_most_at_the_configured_rate(env, login):
    proxy = env["flood"]
    assert call(env, "flood", login["access_token"]).status_code == 200
    assert proxy.fetches == 1  # cold start
    header, payload = unverified(login["access_token"])
    signature = login["access_token"].rsplit(".", 1)[1]

    def forged(_: int) -> int:
        kid = uuid.uuid4().hex
        return call(env, "flood", f"{b64url({**header, 'kid': kid})}.{b64url(payload)}.{signature}").status_code

    started = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(forged, range(300)))
    elapsed = time.monotonic() - started
    assert set(statuses) == {401}
    # One fetch per FLOOD_INTERVAL at most (the first allowed one FLOOD_INTERVAL after the cold fetch).
    assert proxy.fetches - 1 <= math.ceil(elapsed / FLOOD_INTERVAL), (proxy.fetches, elapsed)
    assert call(env, "flood", login["access_token"]).status_code == 200  # real keys kept throughout


# --- spoofed identity headers --------------------------------------------------------------------------------------

SPOOFS = {
    "X-User-Id": "admin-1",
    "X-User-Role": "admin",
    "X-Family-Id": "someone-elses-family",
    "X-Account-Tier": "premium",
    "X-Content-Rating": "R",
    "X-Sv-Debug": "1",
    "x_user_id": "admin-2",  # WSGI backends read this as X-User-Id
    "X-USER-ROLE": "admin",
}
SPOOFED_VALUES = {"admin-1", "admin-2", "admin", "someone-elses-family", "R", "1"}


def received_spoofs(resp: requests.Response) -> dict[str, str]:
    assert resp.status_code == 200, resp.text
    headers = resp.json()["request"]["headers"]
    identity = {"x-user-id", "x-user-role", "x-family-id", "x-account-tier", "x-content-rating"}
    return {
        name: value
        for name, value in headers.items()
        if name.lower().replace("_", "-") in identity or name.lower().startswith("x-sv-")
    }


def test_spoofed_identity_headers_never_reach_the_backend_on_a_protected_route(env, login, claims):
    got = received_spoofs(call(env, "p", login["access_token"], SPOOFS))
    assert got == {
        "X-User-Id": claims["sub"],
        "X-User-Role": "parent",
        "X-Family-Id": claims["family_id"],
        "X-Account-Tier": claims["tier"],
    }


def test_spoofed_identity_headers_never_reach_the_backend_on_a_public_route(env, login, claims):
    assert received_spoofs(call(env, "pub", None, SPOOFS)) == {}  # anonymous: nothing at all
    got = received_spoofs(call(env, "pub", login["access_token"], SPOOFS))  # with a token: only the verified
    assert got["X-User-Id"] == claims["sub"] and not set(got.values()) & SPOOFED_VALUES


def test_protected_route_without_a_token_is_401_and_public_passes(env):
    resp = call(env, "p")
    assert resp.status_code == 401 and resp.headers["WWW-Authenticate"] == 'Bearer realm="storyverse"'
    assert call(env, "pub").status_code == 200


# --- fail closed ---------------------------------------------------------------------------------------------------


def assert_503(resp: requests.Response) -> None:
    assert resp.status_code == 503, (resp.status_code, resp.text)
    assert resp.headers["Content-Type"] == "application/problem+json" and resp.headers["Retry-After"] == "5"
    assert resp.json()["code"] == "auth_unavailable" and "request" not in resp.json()


def test_jwks_down_at_cold_start_is_503_then_recovers(env, login):
    proxy = env["cold"]
    assert_503(call(env, "cold", login["access_token"]))
    assert_503(call(env, "cold", None, {"Authorization": "Bearer a.b.c"}))
    proxy.mode = "up"
    deadline = time.monotonic() + 3
    while (status := call(env, "cold", login["access_token"]).status_code) == 503 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert status == 200


def test_a_jwks_that_serves_garbage_is_503_never_a_pass(env, login):
    for _ in range(3):
        assert_503(call(env, "garbage", login["access_token"]))
    assert env["garbage"].fetches >= 1


def test_redis_unreachable_is_503_with_fault_tolerance_off(env, login):
    assert_503(call(env, "redis-down", login["access_token"]))
    assert_503(call(env, "redis-down", login["access_token"]))  # breaker open: fails fast, still closed


def test_a_redis_that_answers_nonsense_is_503_not_a_pass(env, login):
    """Something on the Redis port answers EXISTS with a string: "not a count" must not read as "not revoked"."""
    assert_503(call(env, "redis-bogus", login["access_token"]))
    assert env["fake_redis"].exists_calls >= 1


def test_an_unforeseen_exception_in_the_handler_is_500_not_a_pass_through(env, login):
    """The honest trigger: redis-py's handshake with a not-quite-Redis raises AttributeError, not a RedisError.

    Nothing below the handler catches that; the handler's catch-all answers a 500 problem itself, so Kong never
    sees an uncaught plugin error (which it would let through after 60 s). redis-py then keeps the half-open
    connection, and the next request's EXISTS gets an answer that is not a count: 503. Closed either way.
    """
    statuses = []
    for _ in range(3):
        resp = call(env, "redis-broken", login["access_token"])
        statuses.append(resp.status_code)
        assert resp.headers["Content-Type"] == "application/problem+json"
        body = resp.json()
        assert body["code"] in ("internal_error", "auth_unavailable") and "request" not in body
        assert "Attribute" not in resp.text
    assert statuses[0] == 500 and set(statuses) <= {500, 503}, statuses
