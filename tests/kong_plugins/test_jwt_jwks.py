"""sv-jwt JWKS: parsing (public members only) and the cache against a real local HTTP server that counts fetches."""

from __future__ import annotations

import random
import string
import threading
import time

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm
from storyverse_plugins.jwt_auth.jwks import JwksCache, JwksFetchError, JwksUnavailable, http_fetcher, parse_jwks
from test_jwt_kit import VERIFY_CFG, JwksServer, dead_url, jwk_of, jwks_doc, serving

ALLOWED = VERIFY_CFG.algorithms


@pytest.fixture
def jwks_server():
    yield from serving()


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def cache_for(url: str, clock=None, **kwargs) -> JwksCache:
    kwargs.setdefault("ttl", 300)
    kwargs.setdefault("min_interval", 10)
    return JwksCache(http_fetcher(url, 0.5), ALLOWED, clock=clock or Clock(), **kwargs)


# --- parsing ----------------------------------------------------------------------------------------------------------


def test_parse_builds_typed_public_keys_for_each_key_type():
    keys, skipped = parse_jwks(jwks_doc("rsa", "ec", "ed"), ALLOWED)
    assert set(keys) == {"rsa-1", "ec-1", "ed-1"} and skipped == []
    assert keys["rsa-1"].algorithms == {"RS256"} and keys["ec-1"].algorithms == {"ES256"}
    assert keys["ed-1"].algorithms == {"EdDSA"}


def test_private_members_are_never_used():
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = RSAAlgorithm.to_jwk(private, as_dict=True)  # includes d, p, q, dp, dq, qi
    jwk.update(kid="with-private", alg="RS256")
    del jwk["key_ops"]  # PyJWT marks private JWKs key_ops=["sign"], which parse_jwks would skip
    keys, _ = parse_jwks({"keys": [jwk]}, ALLOWED)
    assert isinstance(keys["with-private"].key, rsa.RSAPublicKey)


@pytest.mark.parametrize(
    ("jwk", "why"),
    [
        ({"kty": "oct", "k": "c2VjcmV0", "kid": "hmac", "alg": "HS256"}, "no allowed algorithm"),
        ({**jwk_of("rsa"), "kid": "../etc/passwd"}, "kid"),
        ({**jwk_of("rsa"), "kid": None}, "kid"),
        ({**jwk_of("rsa"), "use": "enc"}, "use"),
        ({**jwk_of("rsa"), "key_ops": ["encrypt"]}, "key_ops"),
        ({**jwk_of("rsa"), "alg": "ES256"}, "no allowed algorithm"),
        ({**jwk_of("rsa"), "alg": "HS256"}, "no allowed algorithm"),
        ({**jwk_of("ec"), "crv": "P-384"}, "P-256"),
        ({**jwk_of("ec"), "x": jwk_of("ec")["y"]}, "invalid key material"),
        ({**jwk_of("rsa"), "n": "AQAB"}, "invalid key material"),
        ({**jwk_of("ed"), "x": "AAAA"}, "invalid key material"),
        ("not-an-object", "not an object"),
        ({**jwk_of("rsa"), "alg": ["RS256"]}, "not a string"),  # unhashable: once a TypeError, not a skip
        ({**jwk_of("rsa"), "kty": ["RSA"]}, "not a string"),
        ({**jwk_of("rsa"), "kty": None}, "not a string"),
    ],
)
def test_doubtful_entries_are_skipped_with_a_reason(jwk, why):
    keys, skipped = parse_jwks({"keys": [jwk, jwk_of("ec", kid="good")]}, ALLOWED)
    assert set(keys) == {"good"}
    assert len(skipped) == 1 and why in skipped[0]


def test_small_rsa_keys_are_skipped():
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key()
    jwk = {**RSAAlgorithm.to_jwk(small, as_dict=True), "kid": "small", "alg": "RS256"}
    keys, skipped = parse_jwks({"keys": [jwk]}, ALLOWED)
    assert keys == {} and "1024" in skipped[0]


def test_duplicate_kids_are_dropped_as_ambiguous():
    keys, skipped = parse_jwks({"keys": [jwk_of("rsa", kid="same"), jwk_of("ec", kid="same")]}, ALLOWED)
    assert keys == {} and "duplicate" in skipped[0]


@pytest.mark.parametrize("doc", [[], {}, {"keys": "x"}, None, "keys"])
def test_a_document_without_keys_array_is_a_fetch_error(doc):
    with pytest.raises(JwksFetchError):
        parse_jwks(doc, ALLOWED)


# --- the cache against a real server -------------------------------------------------------------------------------


def test_first_use_fetches_once_then_serves_from_memory(jwks_server):
    cache = cache_for(jwks_server.url)
    for _ in range(50):
        assert "rsa-1" in cache.keys()
    assert jwks_server.fetches == 1


def test_flood_of_random_kids_is_held_to_the_refetch_rate(jwks_server):
    clock = Clock()
    cache = cache_for(jwks_server.url, clock, min_interval=10)
    cache.keys()
    rng = random.Random(1)
    for _ in range(2000):  # 2000 unknown kids over 100 simulated seconds
        clock.t += 0.05
        kid = "".join(rng.choice(string.ascii_letters) for _ in range(12))
        assert cache.refresh_for_unknown_kid(kid) is False
    assert jwks_server.fetches <= 1 + 100 / 10


def test_concurrent_flood_in_real_time_causes_at_most_one_refetch(jwks_server):
    cache = JwksCache(http_fetcher(jwks_server.url, 0.5), ALLOWED, ttl=300, min_interval=30)
    cache.keys()

    def flood() -> None:
        for i in range(100):
            cache.refresh_for_unknown_kid(f"random-{threading.get_ident()}-{i}")

    threads = [threading.Thread(target=flood) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert jwks_server.fetches <= 2


def test_unknown_kid_refetch_finds_a_rotated_in_key(jwks_server):
    clock = Clock()
    cache = cache_for(jwks_server.url, clock)
    cache.keys()
    jwks_server.doc = jwks_doc("rsa", "rsa2")
    clock.t += 10
    assert cache.refresh_for_unknown_kid("rsa-2") is True
    assert "rsa-2" in cache.keys()


@pytest.mark.parametrize("failure", ["status", "garbage", "no usable key", "deep json", "redirect", "unforeseen"])
def test_a_failed_refresh_keeps_the_last_good_keys(jwks_server, failure):
    clock = Clock()
    cache = cache_for(jwks_server.url, clock, ttl=60, min_interval=10)
    good = cache.keys()
    if failure == "status":
        jwks_server.status = 500
    elif failure == "garbage":
        jwks_server.body = b"<html>oops</html>"
    elif failure == "no usable key":
        jwks_server.doc = {"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"}]}
    elif failure == "deep json":
        jwks_server.body = b"[" * 50000
    elif failure == "unforeseen":  # any exception while parsing keeps the keys, whatever its type
        cache._fetch = lambda: (_ for _ in ()).throw(TypeError("a shape nobody foresaw"))
        jwks_server.fetches += 1
    else:
        jwks_server.redirect_to = "http://attacker.invalid/jwks.json"
    clock.t += 61  # stale: the next keys() refetches
    assert cache.keys() is good
    assert cache.refresh_for_unknown_kid("rsa-9") is False
    assert cache.failures == 1 and jwks_server.fetches == 2  # the refetch was rate-limited
    clock.t += 10
    assert cache.keys() is good and cache.failures == 2


def test_cold_start_with_the_jwks_down_is_unavailable_and_retried_at_most_once_a_second():
    clock = Clock()
    cache = cache_for(dead_url(), clock)
    with pytest.raises(JwksUnavailable):
        cache.keys()
    with pytest.raises(JwksUnavailable):
        cache.keys()
    assert cache.fetches == 1
    clock.t += 1.0
    with pytest.raises(JwksUnavailable):
        cache.keys()
    assert cache.fetches == 2


def test_cold_start_recovers_when_the_jwks_comes_up():
    clock = Clock()
    server = JwksServer()
    server.status = 503
    try:
        cache = cache_for(server.url, clock)
        with pytest.raises(JwksUnavailable):
            cache.keys()
        server.status = 200
        clock.t += 1.0
        assert "rsa-1" in cache.keys()
    finally:
        server.close()


def test_fetch_time_is_bounded_by_the_timeout(jwks_server):
    jwks_server.delay = 2.0
    fetch = http_fetcher(jwks_server.url, 0.2)
    started = time.monotonic()
    with pytest.raises(JwksFetchError):
        fetch()
    assert time.monotonic() - started < 1.0


def test_an_oversized_jwks_is_refused(jwks_server):
    jwks_server.body = b'{"keys": []' + b" " * 70000 + b"}"
    with pytest.raises(JwksFetchError):
        http_fetcher(jwks_server.url, 1.0)()
