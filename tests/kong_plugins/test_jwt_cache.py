"""sv-jwt verified-token cache (LRU, expiry, key removal) and the Redis denylist (db 12, breaker, fail closed)."""

from __future__ import annotations

import pytest
import redis
from storyverse_plugins.common.identity import REVOKED_JTI_KEY
from storyverse_plugins.common.redis_pool import RedisSettings, get_client
from storyverse_plugins.jwt_auth.cache import CachedToken, TokenCache, token_digest
from storyverse_plugins.jwt_auth.denylist import DenylistUnavailable, RedisDenylist
from test_jwt_kit import REDIS_DB, redis_db12

KIDS = {"k1": object()}


@pytest.fixture
def redis12():
    yield from redis_db12()


def entry(valid_until: float = 2000.0, kid: str = "k1", jti: str = "j1") -> CachedToken:
    return CachedToken({"sub": "u"}, {"X-User-Id": "u"}, jti, kid, valid_until)


def test_digest_is_sha256_and_the_token_is_not_kept():
    cache = TokenCache(10)
    cache.put(token_digest("secret.token.value"), entry())
    assert len(token_digest("x")) == 32
    assert "secret.token.value" not in repr(cache._entries)


def test_hit_until_the_token_dies():
    cache = TokenCache(10)
    cache.put(b"d", entry(valid_until=2000.0))
    assert cache.get(b"d", 1999.9, KIDS) is not None
    assert cache.get(b"d", 2000.0, KIDS) is None
    assert len(cache) == 0


def test_an_entry_dies_with_its_signing_key():
    cache = TokenCache(10)
    cache.put(b"d", entry(kid="k1"))
    assert cache.get(b"d", 1000.0, {"k2": object()}) is None


def test_lru_is_bounded_and_evicts_the_least_recently_used():
    cache = TokenCache(3)
    for name in (b"a", b"b", b"c"):
        cache.put(name, entry())
    cache.get(b"a", 1000.0, KIDS)
    cache.put(b"d", entry())
    assert len(cache) == 3
    assert cache.get(b"b", 1000.0, KIDS) is None and cache.get(b"a", 1000.0, KIDS) is not None


def test_size_zero_disables_the_cache():
    cache = TokenCache(0)
    cache.put(b"d", entry())
    assert cache.get(b"d", 1000.0, KIDS) is None


def test_denylist_reads_the_auth_service_key(redis12):
    denylist = RedisDenylist(get_client(RedisSettings(db=REDIS_DB)))
    assert denylist.is_revoked("jti-1") is False
    redis12.set(REVOKED_JTI_KEY.format(jti="jti-1"), "1", ex=60)
    assert denylist.is_revoked("jti-1") is True


def test_denylist_down_raises_and_the_breaker_fails_fast_then_recovers():
    class Clock:
        t = 0.0

        def __call__(self):
            return self.t

    clock = Clock()
    client = redis.Redis(port=6379, db=REDIS_DB)
    calls = []

    class Flaky:
        def exists(self, key):
            calls.append(key)
            if len(calls) == 1:
                raise redis.ConnectionError("down")
            return client.exists(key)

    denylist = RedisDenylist(Flaky(), breaker_seconds=0.5, clock=clock)
    with pytest.raises(DenylistUnavailable):
        denylist.is_revoked("j")
    with pytest.raises(DenylistUnavailable):
        denylist.is_revoked("j")  # breaker open: Redis not even asked
    assert len(calls) == 1
    clock.t = 0.6
    assert denylist.is_revoked("j") is False and len(calls) == 2


def test_denylist_on_a_dead_port_is_unavailable_quickly():
    denylist = RedisDenylist(get_client(RedisSettings(port=1)))
    with pytest.raises(DenylistUnavailable):
        denylist.is_revoked("j")
