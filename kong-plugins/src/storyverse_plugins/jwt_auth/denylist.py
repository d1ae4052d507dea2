"""The revoked-``jti`` denylist the auth service writes on logout (``REVOKED_JTI_KEY``, TTL = remaining lifetime).

One Redis ``EXISTS`` per request on the shared pooled client (``common.redis_pool``: timeouts <= 50 ms, no
retries). Any Redis failure is re-raised as ``DenylistUnavailable`` (the handler fails closed with a 503 unless
configured fault tolerant); after a failure the breaker fails fast for ``BREAKER_SECONDS`` so a dead or black-holed
Redis does not hold every request for a timeout.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Protocol

import redis

from storyverse_plugins.common.identity import REVOKED_JTI_KEY

BREAKER_SECONDS = 0.5


class DenylistUnavailable(Exception):
    """The denylist could not be read."""


class Denylist(Protocol):
    def is_revoked(self, jti: str) -> bool: ...


class RedisDenylist:
    def __init__(
        self,
        client: redis.Redis | redis.RedisCluster,  # from common.redis_pool: pooled, short timeouts, no retries
        *,
        breaker_seconds: float = BREAKER_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client, self._breaker_seconds, self._clock = client, breaker_seconds, clock
        self._failed_at: float | None = None
        self._lock = threading.Lock()

    def is_revoked(self, jti: str) -> bool:
        failed_at = self._failed_at
        if failed_at is not None and self._clock() - failed_at < self._breaker_seconds:
            raise DenylistUnavailable("denylist breaker open after a recent Redis failure")
        try:
            revoked = bool(self._client.exists(REVOKED_JTI_KEY.format(jti=jti)))
        except redis.RedisError as exc:
            with self._lock:
                self._failed_at = self._clock()
            raise DenylistUnavailable(f"Redis: {type(exc).__name__}") from exc
        self._failed_at = None
        return revoked


class NoDenylist:
    """Used when the denylist is switched off in the config."""

    def is_revoked(self, jti: str) -> bool:
        return False
