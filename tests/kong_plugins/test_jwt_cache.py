"""sv-jwt verified-token cache (LRU, expiry, key removal) and the Redis denylist (db 12, breaker, fail closed)."""

from __future__ import annotations

import pytest
import redis
from storyverse_plugins.common.identity import REVOKED_JTI_KEY
from storyverse_plugins.common.redis_pool import RedisSettings, get_client
from storyverse_plugins.jwt_auth.cache import CachedToken, TokenCache, token_digest
from storyverse_plugins.jwt_auth.denylist import REVOKED_SID_KEY, DenylistUnavailable, RedisDenylist
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


# --- sessions: jti and sid in one round trip ------------------------------------------------------------------


class Recording:
    """A Redis client that records each EXISTS (one call = one round trip) and answers from real Redis."""

    def __init__(self, answer=None) -> None:
        self.client = redis.Redis(port=6379, db=REDIS_DB)
        self.calls: list[tuple[str, ...]] = []
        self.answer = answer

    def exists(self, *keys):
        self.calls.append(keys)
        return self.client.exists(*keys) if self.answer is None else self.answer


class Clock:
    t = 100.0

    def __call__(self):
        return self.t


def test_revoked_session_is_revoked_and_read_in_the_same_exists(redis12):
    client = Recording()
    denylist = RedisDenylist(client)
    assert denylist.is_revoked("jti-1", "sid-1") is False
    redis12.set(REVOKED_SID_KEY.format(sid="sid-1"), "1", ex=60)
    assert denylist.is_revoked("jti-1", "sid-1") is True
    assert denylist.is_revoked("jti-2", "sid-2") is False
    assert client.calls == [
        ("sv:revoked:jti:jti-1", "sv:revoked:sid:sid-1"),
        ("sv:revoked:jti:jti-1", "sv:revoked:sid:sid-1"),
        ("sv:revoked:jti:jti-2", "sv:revoked:sid:sid-2"),
    ]


def test_the_sid_key_is_the_one_the_auth_service_writes():
    from storyverse_auth import keys

    assert REVOKED_SID_KEY.format(sid="s") == keys.revoked_sid("s")
    assert REVOKED_JTI_KEY.format(jti="j") == keys.revoked_jti("j")


def test_answers_are_reused_for_at_most_the_cache_time(redis12):
    client, clock = Recording(), Clock()
    denylist = RedisDenylist(client, cache_seconds=0.5, clock=clock)
    assert denylist.is_revoked("j", "s") is False
    redis12.set(REVOKED_JTI_KEY.format(jti="j"), "1", ex=60)
    clock.t += 0.49
    assert denylist.is_revoked("j", "s") is False and len(client.calls) == 1  # stale by design, < 0.5 s
    clock.t += 0.02
    assert denylist.is_revoked("j", "s") is True and len(client.calls) == 2  # revocation seen after 0.51 s
    assert denylist.is_revoked("j", "s") is True and len(client.calls) == 2  # a revoked answer is reused too
    assert denylist.is_revoked("k", "s") is False and len(client.calls) == 3  # one answer per (jti, sid)


def test_the_answer_cache_is_bounded_and_ages_out():
    client, clock = Recording(answer=0), Clock()
    denylist = RedisDenylist(client, cache_seconds=1.0, max_entries=3, clock=clock)
    for i in range(5):
        denylist.is_revoked(f"j{i}")
    assert len(denylist._answers) == 3 and ("j0", None) not in denylist._answers
    clock.t += 1.0
    denylist.is_revoked("new")
    assert list(denylist._answers) == [("new", None)]


def test_cache_time_above_one_second_is_refused():
    with pytest.raises(ValueError):
        RedisDenylist(Recording(), cache_seconds=1.5)


@pytest.mark.parametrize("reply", [b"1", "1", None, -1, True])
def test_a_reply_that_is_not_a_count_is_a_failure_not_a_pass(reply):
    client = Recording(answer=reply)
    client.answer = reply
    client.exists = lambda *keys: reply
    denylist = RedisDenylist(client, cache_seconds=1.0)
    with pytest.raises(DenylistUnavailable):
        denylist.is_revoked("j", "s")
    assert denylist._answers == {}


class _SlowOnce:
    """A Redis client whose first EXISTS times out (a busy host), then answers."""

    def __init__(self, answers):
        self.answers = list(answers)

    def exists(self, *keys):
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def test_one_slow_denylist_reply_is_retried_once_not_failed():
    import redis as redis_lib
    from storyverse_plugins.jwt_auth.denylist import RedisDenylist

    denylist = RedisDenylist(_SlowOnce([redis_lib.TimeoutError("slow"), 0]))
    assert denylist.is_revoked("jti-1", "sid-1") is False
    assert denylist.reads == 2


def test_two_slow_replies_or_a_refused_connection_fail_closed_and_open_the_breaker():
    import redis as redis_lib
    from storyverse_plugins.jwt_auth.denylist import DenylistUnavailable, RedisDenylist

    slow = RedisDenylist(_SlowOnce([redis_lib.TimeoutError("slow"), redis_lib.TimeoutError("slow"), 0]))
    with pytest.raises(DenylistUnavailable, match="after one retry"):
        slow.is_revoked("jti-1")
    with pytest.raises(DenylistUnavailable, match="breaker"):
        slow.is_revoked("jti-1")  # the breaker spares the next requests the wait
    refused = RedisDenylist(_SlowOnce([redis_lib.ConnectionError("refused"), 0]))
    with pytest.raises(DenylistUnavailable):
        refused.is_revoked("jti-1")
    assert refused.reads == 1  # a refused connection is not retried
