"""Storage behind the limiter: one call decides a whole batch, one call settles a reservation (STYLE principle 7).

RedisStorage runs quota/lua/*.lua with `register_script` (EVALSHA; on NOSCRIPT redis-py's Script loads the script
and retries, on every primary of a cluster). MemoryStorage runs the same algorithm in process (tests, single node).
Backend errors become StorageError; after one, RedisStorage skips Redis for `breaker_ms` (a circuit breaker), so a
dead Redis costs neither a connect attempt nor a timeout per request.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from importlib import resources
from typing import Any, Protocol

import redis
from redis.exceptions import RedisClusterException
from storyverse_contracts.keys import BLOCKS_INDEX, RESERVATION

from storyverse_plugins.quota.strategies import (
    AbuseState,
    Batch,
    Reservation,
    Strike,
    StrikeResult,
    Verdict,
    counter_step,
    gcra_step,
    overall,
    strike_step,
    verdict_of,
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
    block = [batch.block_key] if batch.block_key else []
    keys = [r.key for r in batch.rates] + block + [c.key for c in batch.counters]
    args: list[Any] = [batch.now_ms, len(batch.rates), len(block), len(batch.counters)]
    for r in batch.rates:
        args += [repr(r.emission_ms), r.capacity, 1 if r.shadow else 0]
    if q and q.counters:
        args += [q.rid, q.res_expiry_ms, max(1, q.expire_at_ms - batch.now_ms), 1 if q.shadow else 0]
        args += [c.limit for c in q.counters]
    return keys, args


def strike_args(s: Strike) -> tuple[list[str], list[Any]]:
    """KEYS and ARGV of abuse.lua for a strike."""
    keys = [s.key, s.block_key] + ([s.login_key] if s.login_key and s.fingerprint else [])
    args = [s.now_ms, s.window_ms, s.threshold, s.base_ms, s.max_ms, s.memory_ms, s.fingerprint if s.login_key else ""]
    return keys, [*args, s.distinct, s.login_window_ms, s.kind, s.subject]


def parse_strike(raw: list) -> StrikeResult:
    reason = raw[5].decode() if isinstance(raw[5], bytes) else str(raw[5])
    return StrikeResult(bool(raw[0]), int(raw[1]), int(raw[2]), int(raw[3]), bool(raw[4]), reason, *map(int, raw[6:8]))


def _num(value: Any) -> float | None:
    return None if value is None else float(value)


def parse_verdict(batch: Batch, raw: list) -> Verdict:
    """decide.lua's raw answer -> the Verdict (strategies.verdict_of)."""
    n = len(batch.rates)
    tats = tuple(_num(v) for v in raw[3 : 3 + n])
    flat = [int(v) for v in raw[3 + n :]]
    counters = tuple((flat[i], flat[i + 1], flat[i + 2]) for i in range(0, len(flat), 3))
    return verdict_of(batch, bool(raw[0]), bool(raw[1]), _num(raw[2]) or 0, tats, counters)


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

    def breaker_open(self) -> bool:
        """The breaker is open now: decisions skip Redis until it closes (sv_quota_redis_breaker_open)."""
        return bool(self._breaker_s) and self._monotonic() < self._open_until

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
        args = ["commit" if commit else "release", reservation.rid, now_ms, reservation.res_expiry_ms]
        return tuple(int(v) for v in self._run("settle", list(reservation.keys), args))

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
    """In-process storage with the same layout and semantics as the Lua scripts (one lock = one atomic script)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._str: dict[str, tuple[float, float]] = {}  # TAT and block keys: key -> (value, expires at ms)
        self._hash: dict[str, dict[str, int]] = {}  # counters: used, grant, r:<rid> -> expiry
        self._expire: dict[str, int] = {}  # counter key -> expires at ms
        self._abuse: dict[str, AbuseState] = {}
        self._failures: dict[str, tuple[set[str], int]] = {}  # login set key -> (fingerprints, expires at)
        self.blocks: dict[str, int] = {}  # the admin index: abuse key -> until

    def grant(self, key: str, units: int) -> None:
        """What an admin grant does: HINCRBY <counter> grant <units>."""
        with self._lock:
            h = self._hash.setdefault(key, {})
            h["grant"] = h.get("grant", 0) + units

    def _get(self, key: str, now_ms: int) -> float | None:
        value, expires = self._str.get(key, (None, 0))
        return value if expires > now_ms else None

    def _counter(self, key: str, now_ms: int) -> dict[str, int]:
        if self._expire.get(key, now_ms + 1) <= now_ms:
            self._hash.pop(key, None)
            self._expire.pop(key, None)
        return self._hash.setdefault(key, {})

    def decide(self, batch: Batch) -> Verdict:
        now, q = batch.now_ms, batch.quota
        with self._lock:
            tats = tuple(self._get(r.key, now) for r in batch.rates)
            block = self._get(batch.block_key, now) if batch.block_key else None
            if block is not None and block > now:
                return verdict_of(batch, False, False, block, tats, ())
            steps = [gcra_step(t, now, r.emission_ms, r.capacity) for r, t in zip(batch.rates, tats, strict=True)]
            raw, fresh = [], []
            for c in batch.counters:
                h = self._counter(c.key, now)
                fresh.append("used" not in h)
                lapsed = [f for f, exp in h.items() if f.startswith(RESERVATION) and exp <= now]
                for f in lapsed:  # never settled: charged, as decide.lua does
                    del h[f]
                if lapsed:
                    h["used"] = h.get("used", 0) + len(lapsed)
                own = RESERVATION + q.rid if q else ""
                held = sum(1 for f in h if f.startswith(RESERVATION) and f != own)
                raw.append((h.get("used", 0), h.get("grant", 0), held))
            counters = tuple(counter_step(*r, c.limit) for r, c in zip(raw, batch.counters, strict=True))
            allowed = overall(batch, tuple(s for s, _ in steps), counters)
            reserved = False
            if allowed:
                for r, (_, new_tat) in zip(batch.rates, steps, strict=True):
                    if new_tat is not None:
                        self._str[r.key] = (new_tat, math.ceil(new_tat - now) + 1 + now)
                for c, state, new in zip(batch.counters, counters, fresh, strict=True):
                    if q and q.rid and state.allowed:
                        h = self._hash[c.key]
                        h[RESERVATION + q.rid] = q.res_expiry_ms
                        if new:
                            h.setdefault("used", 0)
                            self._expire[c.key] = q.expire_at_ms
                        reserved = True
            return verdict_of(batch, allowed, reserved, 0, tats, tuple(raw))

    def settle(self, reservation: Reservation, commit: bool, now_ms: int) -> tuple[int, ...]:
        out = []
        charge = commit or now_ms >= reservation.res_expiry_ms  # a lapsed unit is charged, whatever the outcome
        with self._lock:
            for key in reservation.keys:
                h = self._counter(key, now_ms)
                if h.pop(RESERVATION + reservation.rid, None) is not None and charge:
                    h["used"] = h.get("used", 0) + 1
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
            result = strike_step(state, failures, strike)
            if result.new_block:
                self._str[strike.block_key] = (result.until_ms, result.until_ms)
            return result

    def index_block(self, key: str, until_ms: int, now_ms: int) -> None:
        with self._lock:
            self.blocks[key] = until_ms
            for k in [k for k, u in self.blocks.items() if u <= now_ms]:
                del self.blocks[k]
