"""sv-jwt verified-token cache (LRU, expiry, key removal) and the Redis denylist (db 12, breaker, fail closed)."""

from __future__ import annotations

import pytest
import redis
from storyverse_contracts.keys import revoked_jti_key, revoked_sid_key
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
    redis12.set(revoked_jti_key("jti-1", None), "1", ex=60)
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
    redis12.set(revoked_sid_key("sid-1"), "1", ex=60)
    assert denylist.is_revoked("jti-1", "sid-1") is True
    assert denylist.is_revoked("jti-2", "sid-2") is False
    assert client.calls == [
        ("sv:revoked:{s:sid-1}:jti:jti-1", "sv:revoked:{s:sid-1}:sid"),
        ("sv:revoked:{s:sid-1}:jti:jti-1", "sv:revoked:{s:sid-1}:sid"),
        ("sv:revoked:{s:sid-2}:jti:jti-2", "sv:revoked:{s:sid-2}:sid"),
    ]


def test_the_revocation_keys_keep_their_format_and_share_one_cluster_slot():
    """The auth service writes these keys with the same builders (storyverse_contracts.keys); the formats are
    stable across releases (a gateway and an auth service of different versions run side by side in a rollout)."""
    from redis.crc import key_slot

    assert revoked_sid_key("s") == "sv:revoked:{s:s}:sid"
    assert revoked_jti_key("j", "s") == "sv:revoked:{s:s}:jti:j"
    assert revoked_jti_key("j", None) == "sv:revoked:{j:j}:jti:j"
    for sid in ("0b9f3c52-8a51-4d8e-9a7e-2f1c3b4d5e6f", "another-session"):
        jtis = [f"jti-{n}" for n in range(50)]
        slots = {key_slot(revoked_jti_key(j, sid).encode()) for j in jtis} | {key_slot(revoked_sid_key(sid).encode())}
        assert len(slots) == 1  # EXISTS jti-key sid-key is one command on Redis Cluster


def test_answers_are_reused_for_at_most_the_cache_time(redis12):
    client, clock = Recording(), Clock()
    denylist = RedisDenylist(client, cache_seconds=0.5, clock=clock)
    assert denylist.is_revoked("j", "s") is False
    redis12.set(revoked_jti_key("j", "s"), "1", ex=60)
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


# --- revocations pushed by Redis: the check off the request path (issue 21) ----------------------------------------


def test_a_pushed_revocation_is_enforced_and_steady_state_needs_no_redis_read(redis12):
    """Redis pushes every write under sv:revoked: (client-side caching); a PONG on the same connection proves that
    every push before its PING was applied, which is what bounds the delay by denylist_cache_ms."""
    import time

    from storyverse_plugins.jwt_auth.denylist import RevocationWatch

    settings = RedisSettings(db=REDIS_DB)
    watch = RevocationWatch(settings).start()
    try:
        denylist = RedisDenylist(get_client(settings), cache_seconds=0.5, watch=watch)
        assert wait(lambda: watch.trusted(0.5)), "the watch never confirmed"
        sessions = [f"sess-{n}" for n in range(1024)]
        assert not any(denylist.is_revoked(f"jti-{s}", s) for s in sessions)
        reads = denylist.reads
        assert not any(denylist.is_revoked(f"jti-{s}", s) for s in sessions)
        assert denylist.reads == reads  # 1,024 tokens again: no Redis read at all
        t = time.monotonic()
        redis12.set(revoked_sid_key("sess-7"), "1", ex=60)  # as the auth service writes it: "log out this device"
        redis12.set(revoked_jti_key("jti-sess-9", "sess-9"), "1", ex=60)  # logout of one token
        assert wait(lambda: watch.confirmed_after(t)), "no PONG after the revocations"
        assert denylist.is_revoked("jti-sess-7", "sess-7") and denylist.is_revoked("jti-sess-9", "sess-9")
        assert denylist.is_revoked("another-token-of-7", "sess-7")
        assert not denylist.is_revoked("jti-sess-8", "sess-8") and denylist.reads == reads + 3
    finally:
        watch.stop()


class FakeWatch:
    def __init__(self, trusted: bool = True) -> None:
        self.is_trusted, self.listeners = trusted, []

    def subscribe(self, listener) -> None:
        self.listeners.append(listener)

    def trusted(self, window_s: float) -> bool:
        return self.is_trusted

    def push(self, keys) -> None:
        for listener in self.listeners:
            listener(keys)


def test_an_answer_read_across_an_invalidation_is_not_kept():
    watch = FakeWatch()

    class RevokedWhileReading(Recording):
        def exists(self, *keys):
            answer = super().exists(*keys)  # "not revoked"... and the revocation is pushed before we keep it
            watch.push([revoked_sid_key("s")])
            return answer

    denylist = RedisDenylist(RevokedWhileReading(answer=0), cache_seconds=0.5, watch=watch)
    assert denylist.is_revoked("j", "s") is False
    assert denylist.is_revoked("j", "s") is False and denylist.reads == 2  # asked again, not served stale


def test_a_pushed_key_drops_every_token_of_the_session_and_a_flush_drops_all():
    watch = FakeWatch()
    client = Recording(answer=0)
    denylist = RedisDenylist(client, cache_seconds=0.5, watch=watch)
    for jti in ("a", "b"):
        denylist.is_revoked(jti, "s")
    denylist.is_revoked("c", "t")
    watch.push([revoked_sid_key("s")])
    for jti, sid in (("a", "s"), ("b", "s"), ("c", "t")):
        denylist.is_revoked(jti, sid)
    assert len(client.calls) == 5  # a and b read again, c still held
    watch.push(None)  # FLUSHDB, or the watch reconnected
    denylist.is_revoked("c", "t")
    assert len(client.calls) == 6


def test_without_a_confirmed_watch_answers_live_at_most_cache_seconds():
    watch, clock = FakeWatch(trusted=False), Clock()
    client = Recording(answer=0)
    denylist = RedisDenylist(client, cache_seconds=0.5, watch=watch, clock=clock)
    denylist.is_revoked("j", "s")
    clock.t += 0.6
    denylist.is_revoked("j", "s")
    assert len(client.calls) == 2


def wait(predicate, seconds: float = 5.0) -> bool:
    """Poll until predicate() holds (a bounded wait, not a timing assertion)."""
    import time

    deadline = time.monotonic() + seconds
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.01)
    return predicate()


def test_distinct_tokens_never_share_a_digest_input():
    """The old ascii/replace encoding mapped every non-ASCII character to '?': now the input is one-to-one."""
    assert token_digest("a.b.\u00e9") != token_digest("a.b.\u00fc") != token_digest("a.b.?")
    assert len(token_digest("a.b.\udcff")) == 32  # a surrogate-escaped byte (kong_pluginserver) does not raise
