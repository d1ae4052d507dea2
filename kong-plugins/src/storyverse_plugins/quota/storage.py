"""Storage behind the limiter: one call decides a whole batch, one call settles a reservation (STYLE principle 7).

RedisStorage runs quota/lua/*.lua with `register_script` (EVALSHA; on NOSCRIPT redis-py's Script loads the script
and retries, on every primary of a cluster). MemoryStorage runs the same algorithm in process (tests, single node).
Backend errors become StorageError; after one, RedisStorage skips Redis for `breaker_ms` (a circuit breaker), so a
dead Redis costs neither a connect attempt nor a timeout per request.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from importlib import resources
from typing import Any, Protocol

import redis
from redis.exceptions import RedisClusterException
from storyverse_contracts.keys import BLOCKS_INDEX

from storyverse_plugins.quota.strategies import (
    AbuseState,
    Batch,
    CounterState,
    RateState,
    Reservation,
    Strike,
    StrikeResult,
    Verdict,
    counter_step,
    gcra_step,
    overall,
    strike_step,
)


class StorageError(Exception):
    """The limit store could not answer; fault_tolerant decides what happens. `opened`: this failure opened the
    circuit breaker (counted and logged once per opening, so an open breaker is never silent)."""

    def __init__(self, message: str, opened: bool = False) -> None:
        super().__init__(message)
        self.opened = opened


class Storage(Protocol):
    def decide(self, batch: Batch) -> Verdict: ...

    def settle(self, reservation: Reservation, commit: bool, now_ms: int) -> tuple[int, ...]: ...

    def strike(self, strike: Strike) -> StrikeResult: ...

    def index_block(self, key: str, until_ms: int, now_ms: int) -> None: ...


def load_lua(name: str) -> str:
    return resources.files("storyverse_plugins.quota").joinpath("lua", name).read_text(encoding="utf-8")


def decide_args(batch: Batch) -> tuple[list[str], list[Any]]:
    """KEYS and ARGV of decide.lua for a batch."""
    q = batch.quota
    keys = [r.key for r in batch.rates]
    for c in batch.counters:
        keys += [c.key, c.res_key]
    args: list[Any] = [
        batch.now_ms,
        len(batch.rates),
        len(batch.counters),
        q.rid if q else "",
        q.res_expiry_ms if q else 0,
        q.expire_at_ms if q else 0,
        1 if q and q.shadow else 0,
    ]
    for r in batch.rates:
        args += [repr(r.emission_ms), r.capacity, 1 if r.shadow else 0]
    args += [c.limit for c in batch.counters]
    if batch.block_key:
        keys.append(batch.block_key)
        args.append(1)
    return keys, args


def strike_args(s: Strike) -> tuple[list[str], list[Any]]:
    """KEYS and ARGV of abuse.lua for a strike."""
    keys = [s.key] + ([s.login_key] if s.login_key and s.fingerprint else [])
    args = [s.now_ms, s.window_ms, s.threshold, s.base_ms, s.max_ms, s.memory_ms, s.fingerprint if s.login_key else ""]
    return keys, [*args, s.distinct, s.login_window_ms, s.kind, s.subject]


def parse_strike(raw: list) -> StrikeResult:
    reason = raw[5].decode() if isinstance(raw[5], bytes) else str(raw[5])
    return StrikeResult(bool(raw[0]), int(raw[1]), int(raw[2]), int(raw[3]), bool(raw[4]), reason, *map(int, raw[6:8]))


def parse_verdict(batch: Batch, raw: list[int]) -> Verdict:
    n = len(batch.rates)
    rates = tuple(
        RateState(bool(raw[2 + 4 * i]), int(raw[3 + 4 * i]), int(raw[4 + 4 * i]), int(raw[5 + 4 * i])) for i in range(n)
    )
    base = 2 + 4 * n
    counters = tuple(
        CounterState(bool(raw[base + 4 * j]), *(int(v) for v in raw[base + 4 * j + 1 : base + 4 * j + 4]))
        for j in range(len(batch.counters))
    )
    block_until = int(raw[base + 4 * len(batch.counters)]) if len(raw) > base + 4 * len(batch.counters) else 0
    return Verdict(bool(raw[0]) and not block_until, bool(raw[1]), rates, counters, block_until)


# Scripts safe to run twice for one request, retried once after a timeout (Redis may have run the first call):
# decide reserves by request id, so a retry does not count its own unit twice (a GCRA policy may be charged one
# extra unit). A busy host then costs one more call, not a 503 on a fail-closed quota. settle settles only a
# reservation still held (a rerun changes nothing) but stays unretried: a lost settle lapses and is charged; abuse (a
# strike would count twice) is not retried.
IDEMPOTENT = frozenset(("decide",))


def _is_timeout(exc: Exception) -> bool:
    return isinstance(exc, redis.TimeoutError | TimeoutError)


class RedisStorage:
    """Redis (standalone or Cluster) storage: exactly one EVALSHA per decision and per settlement."""

    def __init__(
        self,
        client: Callable[[], redis.Redis | redis.RedisCluster],
        breaker_ms: int = 1000,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._factory = client
        self._client: redis.Redis | redis.RedisCluster | None = None
        self._scripts: dict[str, Any] = {}
        self._breaker_s = breaker_ms / 1000.0
        self._monotonic = monotonic
        self._open_until = 0.0
        self._lock = threading.Lock()
        self.calls = 0  # script calls made (round trips, bar a NOSCRIPT reload)
        self.openings = 0  # times the breaker opened
        self._last_ok = monotonic()  # last successful call (timeouts open the breaker only after breaker_ms without)

    def _script(self, name: str):
        if self._client is None:
            with self._lock:
                if self._client is None:
                    client = self._factory()
                    names = ("decide", "settle", "abuse")
                    self._scripts = {n: client.register_script(load_lua(n + ".lua")) for n in names}
                    self._client = client
        return self._scripts[name]

    def _run(self, name: str, keys: list[str], args: list[Any]) -> list[int]:
        if self._breaker_s and self._monotonic() < self._open_until:
            raise StorageError("redis skipped: circuit open after a recent error")
        attempts = 2 if name in IDEMPOTENT else 1
        for attempt in range(attempts):
            try:
                self.calls += 1
                result = self._script(name)(keys=keys, args=args)
            except (redis.RedisError, RedisClusterException, OSError) as exc:
                opened = self._trip(exc)
                if attempt + 1 < attempts and _is_timeout(exc) and not opened:
                    continue
                detail = f" (circuit open for {self._breaker_s * 1000:.0f} ms)" if opened else ""
                message = f"redis {name} failed: {exc.__class__.__name__}: {exc}{detail}"
                raise StorageError(message, opened) from exc
            self._last_ok = self._monotonic()
            return result
        raise AssertionError("unreachable")

    def _trip(self, exc: Exception) -> bool:
        """Open the breaker at once when Redis is unreachable; on timeouts (or an exhausted local pool) only once
        nothing has succeeded for breaker_ms: a stall on a busy host must not fail every request for breaker_ms,
        a hung Redis must not cost a timeout per request for long. True when this call opened it."""
        if not self._breaker_s:
            return False
        now = self._monotonic()
        transient = _is_timeout(exc) or "No connection available" in str(exc)
        if transient and now - self._last_ok < self._breaker_s:
            return False
        with self._lock:
            opened = now >= self._open_until  # not already open (concurrent failures open it once)
            self._open_until = now + self._breaker_s
            self.openings += opened
        return opened

    def decide(self, batch: Batch) -> Verdict:
        keys, args = decide_args(batch)
        return parse_verdict(batch, self._run("decide", keys, args))

    def settle(self, reservation: Reservation, commit: bool, now_ms: int) -> tuple[int, ...]:
        keys = [k for pair in reservation.keys for k in pair]
        args = ["commit" if commit else "release", reservation.rid, now_ms, reservation.res_expiry_ms]
        args.append(reservation.expire_at_ms)
        return tuple(int(v) for v in self._run("settle", keys, args))

    def strike(self, strike: Strike) -> StrikeResult:
        keys, args = strike_args(strike)
        return parse_strike(self._run("abuse", keys, args))

    def index_block(self, key: str, until_ms: int, now_ms: int) -> None:
        """Add a new block to the admin list (its own slot, so a second command, only when a block starts)."""
        self._script("abuse")  # the client
        try:
            self._client.zadd(BLOCKS_INDEX, {key: until_ms})
            self._client.zremrangebyscore(BLOCKS_INDEX, "-inf", now_ms)
        except (redis.RedisError, RedisClusterException, OSError) as exc:
            raise StorageError(f"redis index_block failed: {exc.__class__.__name__}: {exc}") from exc


class MemoryStorage:
    """In-process storage with the same semantics as the Lua scripts (one lock = one atomic script)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tat: dict[str, tuple[float, float]] = {}  # key -> (tat, expires_at_ms)
        self._hash: dict[str, dict[str, int]] = {}
        self._zset: dict[str, dict[str, int]] = {}
        self._expire: dict[str, int] = {}  # hash/zset key -> expire-at ms
        self._abuse: dict[str, AbuseState] = {}
        self._failures: dict[str, tuple[set[str], int]] = {}  # login set key -> (fingerprints, expires at)
        self.blocks: dict[str, int] = {}  # the admin index: abuse key -> until

    def grant(self, key: str, units: int) -> None:
        """What an admin grant does: HINCRBY <counter> grant <units>."""
        with self._lock:
            h = self._hash.setdefault(key, {})
            h["grant"] = h.get("grant", 0) + units

    def _live(self, key: str, now_ms: int) -> None:
        if self._expire.get(key, now_ms + 1) <= now_ms:
            self._hash.pop(key, None)
            self._zset.pop(key, None)
            self._expire.pop(key, None)

    def decide(self, batch: Batch) -> Verdict:
        now, q = batch.now_ms, batch.quota
        with self._lock:
            rates, tats = [], []
            for r in batch.rates:
                tat, exp = self._tat.get(r.key, (None, 0))
                state, new_tat = gcra_step(tat if exp > now else None, now, r.emission_ms, r.capacity)
                rates.append(state)
                tats.append(new_tat)
            counters = []
            for c in batch.counters:
                self._live(c.key, now)
                self._live(c.res_key, now)
                zset = self._zset.setdefault(c.res_key, {})
                lapsed = [rid for rid, exp in zset.items() if exp <= now]
                for rid in lapsed:  # never settled: charged, as decide.lua does
                    del zset[rid]
                if lapsed:
                    h = self._hash.setdefault(c.key, {})
                    h["used"] = h.get("used", 0) + len(lapsed)
                    self._expire.setdefault(c.key, self._expire.get(c.res_key, q.expire_at_ms if q else now + 1))
                h = self._hash.get(c.key, {})
                counters.append(counter_step(h.get("used", 0), h.get("grant", 0), len(zset), c.limit))
            allowed = overall(batch, tuple(rates), tuple(counters))
            block_until = 0
            if batch.block_key:
                state = self._abuse.get(batch.block_key)
                if state is not None and state.until > now and state.expires_at > now:
                    block_until, allowed = state.until, False
            reserved = False
            if allowed:
                for r, new_tat in zip(batch.rates, tats, strict=True):
                    if new_tat is not None:
                        self._tat[r.key] = (round(new_tat, 3), new_tat + 1)
                for i, c in enumerate(batch.counters):
                    if q and q.rid and counters[i].allowed:
                        self._zset[c.res_key][q.rid] = q.res_expiry_ms
                        self._hash.setdefault(c.key, {}).setdefault("used", 0)
                        self._expire[c.key] = self._expire[c.res_key] = q.expire_at_ms
                        s = counters[i]
                        counters[i] = CounterState(s.allowed, s.limit, s.used, s.reserved + 1)
                        reserved = True
            return Verdict(allowed, reserved, tuple(rates), tuple(counters), block_until)

    def settle(self, reservation: Reservation, commit: bool, now_ms: int) -> tuple[int, ...]:
        out = []
        with self._lock:
            for key, res_key in reservation.keys:
                held = self._zset.get(res_key, {}).pop(reservation.rid, None) is not None
                h = self._hash.setdefault(key, {})
                if commit and held:  # a swept (lapsed) reservation was charged by decide
                    h["used"] = h.get("used", 0) + 1
                    self._expire[key] = reservation.expire_at_ms
                out.append(h.get("used", 0))
        return tuple(out)

    def strike(self, strike: Strike) -> StrikeResult:
        now = strike.now_ms
        with self._lock:
            state = self._abuse.get(strike.key)
            if state is None or state.expires_at <= now:
                state = self._abuse[strike.key] = AbuseState()
            failures = None
            if strike.login_key and strike.fingerprint:
                found = self._failures.get(strike.login_key)
                if found is None or found[1] <= now:
                    found = self._failures[strike.login_key] = (set(), now + strike.login_window_ms)
                failures = found[0]
            return strike_step(state, failures, strike)

    def index_block(self, key: str, until_ms: int, now_ms: int) -> None:
        with self._lock:
            self.blocks[key] = until_ms
            for k in [k for k, u in self.blocks.items() if u <= now_ms]:
                del self.blocks[k]
