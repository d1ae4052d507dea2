"""The auth service's revocation denylist: a revoked access token (``jti``) or a revoked session (``sid``).

The auth service writes ``sv:revoked:jti:<jti>`` on logout (TTL = the token's remaining lifetime) and
``sv:revoked:sid:<sid>`` whenever a session ends (logout, "log out other devices", refresh-token reuse, password
change/reset; TTL = access-token lifetime + 60 s). Both keys are read in ONE Redis round trip: ``EXISTS jti-key
sid-key`` counts how many exist (standalone Redis; a Redis Cluster client splits the two keys by slot).

Short answer cache (``ttl`` seconds, at most ``MAX_CACHE_SECONDS``): an answer read from Redis is reused for the
same ``(jti, sid)`` until it is ``ttl`` old, so a token used many times a second costs one Redis read per ``ttl``.
The price is bounded staleness: a revocation takes effect within ``ttl`` (DESIGN: "within ~1 s"). ``ttl == 0``
asks Redis on every request.

Any Redis failure is re-raised as ``DenylistUnavailable`` (the handler fails closed with a 503 unless configured
fault tolerant); after a failure the breaker fails fast for ``BREAKER_SECONDS`` so a dead or black-holed Redis does
not hold every request for a timeout. A reply that is not a count is a failure too, never "not revoked".
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Protocol

import redis

from storyverse_plugins.common.identity import REVOKED_JTI_KEY

# Written by the auth service (storyverse_auth/keys.py, revoked_sid); the auth service's README lists both keys.
REVOKED_SID_KEY = "sv:revoked:sid:{sid}"
BREAKER_SECONDS = 0.5
MAX_CACHE_SECONDS = 1.0
MAX_CACHE_ENTRIES = 100_000


class DenylistUnavailable(Exception):
    """The denylist could not be read."""


class Denylist(Protocol):
    def is_revoked(self, jti: str, sid: str | None = None) -> bool: ...


def denylist_keys(jti: str, sid: str | None) -> tuple[str, ...]:
    jti_key = REVOKED_JTI_KEY.format(jti=jti)
    return (jti_key, REVOKED_SID_KEY.format(sid=sid)) if sid else (jti_key,)


class RedisDenylist:
    def __init__(
        self,
        client: redis.Redis | redis.RedisCluster,  # from common.redis_pool: pooled, short timeouts, no retries
        *,
        cache_seconds: float = 0.0,
        max_entries: int = MAX_CACHE_ENTRIES,
        breaker_seconds: float = BREAKER_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 <= cache_seconds <= MAX_CACHE_SECONDS:
            raise ValueError(f"cache_seconds must be between 0 and {MAX_CACHE_SECONDS}")
        self._client, self._breaker_seconds, self._clock = client, breaker_seconds, clock
        self._cache_seconds, self._max_entries = cache_seconds, max_entries
        # (jti, sid) -> (read at, revoked); insertion order is read order, so the oldest entries are first.
        self._answers: dict[tuple[str, str | None], tuple[float, bool]] = {}
        self._failed_at: float | None = None
        self._lock = threading.Lock()
        self.reads = 0  # Redis round trips (for tests and the bench)

    def is_revoked(self, jti: str, sid: str | None = None) -> bool:
        now = self._clock()
        key = (jti, sid)
        if self._cache_seconds:
            answer = self._answers.get(key)
            if answer is not None and now - answer[0] < self._cache_seconds:
                return answer[1]
        failed_at = self._failed_at
        if failed_at is not None and now - failed_at < self._breaker_seconds:
            raise DenylistUnavailable("denylist breaker open after a recent Redis failure")
        try:
            count = self._exists(jti, sid)
        except redis.TimeoutError:
            # One slow reply (a busy host, a pause) is asked again once before failing closed; a refused or
            # reset connection is not: Redis is down, and the breaker spares every request the wait.
            try:
                count = self._exists(jti, sid)
            except redis.RedisError as exc:
                self._fail()
                raise DenylistUnavailable(f"Redis: {type(exc).__name__} (after one retry)") from exc
        except redis.RedisError as exc:
            self._fail()
            raise DenylistUnavailable(f"Redis: {type(exc).__name__}") from exc
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            self._fail()
            raise DenylistUnavailable(f"Redis: EXISTS answered {type(count).__name__}, not a count")
        self._failed_at = None
        revoked = count > 0
        if self._cache_seconds:
            self._remember(key, now, revoked)
        return revoked

    def _exists(self, jti: str, sid: str | None) -> object:
        self.reads += 1
        return self._client.exists(*denylist_keys(jti, sid))

    def _fail(self) -> None:
        with self._lock:
            self._failed_at = self._clock()

    def _remember(self, key: tuple[str, str | None], now: float, revoked: bool) -> None:
        with self._lock:
            answers = self._answers
            answers.pop(key, None)
            answers[key] = (now, revoked)
            # Drop what has aged out (all at the front), then the oldest while over the bound.
            while answers:
                oldest = next(iter(answers))
                if now - answers[oldest][0] < self._cache_seconds and len(answers) <= self._max_entries:
                    break
                del answers[oldest]


class NoDenylist:
    """Used when the denylist is switched off in the config."""

    def is_revoked(self, jti: str, sid: str | None = None) -> bool:
        return False
