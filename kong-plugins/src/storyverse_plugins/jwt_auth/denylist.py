"""The auth service's revocation denylist: a revoked access token (``jti``) or a revoked session (``sid``).

The auth service writes ``sv:revoked:{s:<sid>}:jti:<jti>`` on logout (TTL = the token's remaining lifetime) and
``sv:revoked:{s:<sid>}:sid`` whenever a session ends (logout, "log out other devices", refresh-token reuse, password
change/reset; TTL = access-token lifetime + 60 s); storyverse_contracts.keys builds both. They share the session's
hash tag, so ``EXISTS jti-key sid-key`` is ONE round trip on standalone Redis and on Redis Cluster alike.

Off the per-request path (``RevocationWatch``, standalone Redis): the plugin server asks Redis to push every write
under ``sv:revoked:`` (client-side caching, ``CLIENT TRACKING ... BCAST PREFIX sv:revoked:``, invalidations
redirected to a connection subscribed to ``__redis__:invalidate``). A token's answer is read from Redis once, then
kept in process until an invalidation names one of its keys. Bound: the watcher pings its subscribed connection every
``PING_EVERY_S``; a PONG proves that every invalidation Redis pushed before that PING has been applied (one ordered
connection). Answers are trusted only while the last PONG answered a PING sent less than ``cache_seconds`` ago (the
configured bound, sv-jwt's ``denylist_cache_ms``, 500 ms by default, ≤ 1 s), so a revoke is enforced within that
bound in both modes; when the watch cannot vouch (watcher down, Redis unreachable, Cluster) every request reads
Redis, reusing an answer for at most ``cache_seconds``. ``cache_seconds == 0`` reads Redis on every request.

Any Redis failure on the request path is re-raised as ``DenylistUnavailable`` (the handler fails closed with a 503
unless configured fault tolerant); after a failure the breaker fails fast for ``BREAKER_SECONDS`` so a dead or
black-holed Redis does not hold every request for a timeout. A reply that is not a count is a failure too.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

import redis
from storyverse_contracts.keys import REVOKED_PREFIX, revoked_jti_key, revoked_sid_key

from storyverse_plugins.common.redis_pool import RedisSettings

BREAKER_SECONDS = 0.5
MAX_CACHE_SECONDS = 1.0
MAX_CACHE_ENTRIES = 100_000
PING_EVERY_S = 0.1
LIVENESS_S = 2.0  # no PONG for this long: the watcher reconnects
INVALIDATE_CHANNEL = "__redis__:invalidate"
_log = logging.getLogger("storyverse_plugins.jwt_auth")


class DenylistUnavailable(Exception):
    """The denylist could not be read."""


class Denylist(Protocol):
    def is_revoked(self, jti: str, sid: str | None = None) -> bool: ...


def denylist_keys(jti: str, sid: str | None) -> tuple[str, ...]:
    jti_key = revoked_jti_key(jti, sid)
    return (jti_key, revoked_sid_key(sid)) if sid else (jti_key,)


class RevocationWatch:
    """A daemon thread that follows Redis's invalidation pushes for ``sv:revoked:*`` (standalone Redis, 6+)."""

    def __init__(self, settings: RedisSettings, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._settings, self._monotonic = settings, monotonic
        self._confirmed_at = float("-inf")  # send time of the last PING whose PONG came back
        self._listeners: list[Callable[[list[str] | None], None]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.invalidations = 0
        self._warned = False

    def subscribe(self, listener: Callable[[list[str] | None], None]) -> None:
        """``listener(keys)`` on every push (``None``: everything, e.g. FLUSHDB or a reconnect)."""
        self._listeners.append(listener)

    def start(self) -> RevocationWatch:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="sv-jwt-revocation-watch", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def trusted(self, window_s: float) -> bool:
        """Every invalidation Redis pushed more than window_s ago has been applied."""
        return self._monotonic() - self._confirmed_at < window_s

    def confirmed_after(self, t: float) -> bool:
        """A PING sent at or after monotonic time t has been answered: every push before t is applied (tests)."""
        return self._confirmed_at >= t

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._follow()
            except Exception as exc:  # noqa: BLE001 - any failure: stop trusting, reconnect after a pause
                if self._confirmed_at != float("-inf") or not self._warned:  # once per loss, not once a second
                    _log.warning("sv-jwt revocation watch lost (%s); reading Redis per request", type(exc).__name__)
                    self._warned = True
                self._confirmed_at = float("-inf")
            self._notify(None)
            self._stop.wait(1.0)

    def _connection(self) -> redis.Connection:
        """RESP2: pushes arrive as Pub/Sub messages on the redirect connection, in order with its PONGs."""
        s = self._settings
        kind = redis.SSLConnection if s.ssl else redis.Connection
        conn = kind(
            host=s.host, port=s.port, db=s.db, username=s.username, password=s.password,
            socket_timeout=LIVENESS_S, socket_connect_timeout=s.timeout_ms / 1000.0, protocol=2,
        )  # fmt: skip
        conn.connect()
        return conn

    def _follow(self) -> None:
        listen, control = self._connection(), self._connection()
        try:
            listen.send_command("CLIENT", "ID")
            client_id = int(listen.read_response())
            listen.send_command("SUBSCRIBE", INVALIDATE_CHANNEL)
            listen.read_response()
            control.send_command("CLIENT", "TRACKING", "ON", "REDIRECT", client_id, "BCAST", "PREFIX", REVOKED_PREFIX)
            control.read_response()  # an error reply raises: Redis < 6 or no permission, so no watch
            self._notify(None)  # anything held before tracking started is unproven
            self._loop(listen, control)
        finally:
            listen.disconnect()
            control.disconnect()

    def _loop(self, listen: redis.Connection, control: redis.Connection) -> None:
        next_ping = 0.0
        while not self._stop.is_set():
            now = self._monotonic()
            if now >= next_ping:
                control.send_command("PING")  # the tracking client stays alive (its loss ends the redirect)
                control.read_response()
                listen.send_command("PING", repr(now))  # answered in order after every earlier push
                next_ping = now + PING_EVERY_S
            if listen.can_read(timeout=PING_EVERY_S):
                self._handle(listen.read_response())
            elif self._monotonic() - max(self._confirmed_at, now - PING_EVERY_S) > LIVENESS_S:
                raise TimeoutError("no PONG from Redis")

    def _handle(self, reply: list) -> None:
        kind = reply[0].decode() if isinstance(reply[0], bytes) else str(reply[0])
        if kind == "pong":
            self._confirmed_at = max(self._confirmed_at, float(reply[1]))
        elif kind == "message":
            data = reply[2]
            self.invalidations += 1
            self._notify(None if data is None else [k.decode() if isinstance(k, bytes) else str(k) for k in data])

    def _notify(self, keys: list[str] | None) -> None:
        for listener in self._listeners:
            listener(keys)


class RedisDenylist:
    def __init__(
        self,
        client: redis.Redis | redis.RedisCluster,  # from common.redis_pool: pooled, short timeouts, no retries
        *,
        cache_seconds: float = 0.0,
        max_entries: int = MAX_CACHE_ENTRIES,
        breaker_seconds: float = BREAKER_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        watch: RevocationWatch | None = None,
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
        # answers proven by the watch: kept until a pushed invalidation names one of their keys
        self._watch = watch
        self._held: dict[tuple[str, str | None], bool] = {}
        self._by_key: dict[str, set[tuple[str, str | None]]] = {}  # a session's sid key names all its tokens
        self._generation = 0  # bumped by every invalidation: an answer read across one is not kept
        if watch is not None:
            watch.subscribe(self._invalidate)

    def is_revoked(self, jti: str, sid: str | None = None) -> bool:
        key = (jti, sid)
        watched = self._watch is not None and self._cache_seconds > 0 and self._watch.trusted(self._cache_seconds)
        if watched:
            held = self._held.get(key)
            if held is not None:
                return held
        now = self._clock()
        if self._cache_seconds and not watched:
            answer = self._answers.get(key)
            if answer is not None and now - answer[0] < self._cache_seconds:
                return answer[1]
        generation = self._generation
        revoked = self._read(jti, sid, now)
        if watched:
            self._hold(key, revoked, generation)
        elif self._cache_seconds:
            self._remember(key, now, revoked)
        return revoked

    def _read(self, jti: str, sid: str | None, now: float) -> bool:
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
        return count > 0

    def _exists(self, jti: str, sid: str | None) -> object:
        self.reads += 1
        return self._client.exists(*denylist_keys(jti, sid))

    def _fail(self) -> None:
        with self._lock:
            self._failed_at = self._clock()

    def _hold(self, key: tuple[str, str | None], revoked: bool, generation: int) -> None:
        with self._lock:
            if generation != self._generation:
                return  # an invalidation arrived while Redis was read: this answer may predate it
            if len(self._held) >= self._max_entries:
                self._clear()
            self._held[key] = revoked
            for name in denylist_keys(*key):
                self._by_key.setdefault(name, set()).add(key)

    def _invalidate(self, names: list[str] | None) -> None:
        with self._lock:
            self._generation += 1
            if names is None:
                self._clear()
                return
            for name in names:
                for key in self._by_key.pop(name, ()):
                    self._held.pop(key, None)

    def _clear(self) -> None:
        self._held.clear()
        self._by_key.clear()

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
