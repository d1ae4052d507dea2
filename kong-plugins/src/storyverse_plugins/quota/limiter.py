"""The quota core: a Batch in, an Allow/Deny decision out (STYLE principle 3), with the over-limit cache, shadow
mode and fault tolerance. No PDK: the handler feeds it plain values and applies the result.

When Redis cannot answer (error, timeout after the retry, open breaker), rate limits do not fail open: the
fault-tolerant ones are decided by `LocalRates`, the same GCRA in this process (so the cluster-wide limit becomes a
per-process one, at most `limit` x processes, for the outage only); the others and a fail-closed quota answer 503.
Every such decision is counted (`degraded`, `fail_open`), and the breaker's openings are counted and logged."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from dataclasses import dataclass

from storyverse_plugins.common.decision import Allow, Deny
from storyverse_plugins.quota.cache import Blocked, OverLimitCache
from storyverse_plugins.quota.headers import DAY_S, LimitView, render, seconds
from storyverse_plugins.quota.metrics import Metrics
from storyverse_plugins.quota.storage import Storage, StorageError
from storyverse_plugins.quota.strategies import Batch, RateState, Reservation, Strike, StrikeResult, Verdict, gcra_step

BLOCK_POLICY = "abuse-block"  # the policy name of abuse blocks in metrics and headers


@dataclass(frozen=True)
class Outcome:
    """The decision, the reservation to settle in the log phase, and an error to log (fault-tolerant pass)."""

    decision: Allow | Deny
    reservation: Reservation | None = None
    error: str | None = None
    breaker_opened: bool = False  # this request's failure opened the Redis breaker: always logged


class LocalRates:
    """GCRA state in process, for the fault-tolerant rate limits while Redis cannot answer (bounded memory).

    A subject first seen here starts with a drained bucket: Redis may have admitted its whole burst just before
    failing, so only the sustained rate (one request per window/limit) is added on top of what Redis counted."""

    def __init__(self, max_keys: int = 100_000) -> None:
        self._tat: dict[str, tuple[float, float]] = {}  # key -> (tat, expires at ms)
        self._max_keys = max_keys
        self._lock = threading.Lock()

    def decide(self, batch: Batch) -> tuple[RateState, ...]:
        now = batch.now_ms
        with self._lock:
            states, tats = [], []
            for r in batch.rates:
                tat, exp = self._tat.get(r.key, (None, 0))
                if tat is None or exp <= now:  # unknown here: assume Redis saw the bucket drained (never a burst)
                    tat = now + (r.capacity - 1) * r.emission_ms
                state, new_tat = gcra_step(tat, now, r.emission_ms, r.capacity)
                states.append(state)
                tats.append(new_tat)
            if all(s.allowed or r.shadow for r, s in zip(batch.rates, states, strict=True)):
                for r, new_tat in zip(batch.rates, tats, strict=True):
                    if new_tat is not None:
                        self._tat[r.key] = (new_tat, new_tat + 1)
                self._prune(now)
            return tuple(states)

    def _prune(self, now: int) -> None:
        if len(self._tat) <= self._max_keys:
            return
        for key in [k for k, (_, exp) in self._tat.items() if exp <= now]:
            del self._tat[key]
        while len(self._tat) > self._max_keys:  # still full of live keys: forget the oldest inserted
            del self._tat[next(iter(self._tat))]


@dataclass(frozen=True)
class Options:
    jitter_max_s: int = 1
    use_cache: bool = True
    quota_cache_max_s: int = 30
    with_headers: bool = True


class Limiter:
    def __init__(
        self,
        storage: Storage,
        options: Options = Options(),
        cache: OverLimitCache | None = None,
        metrics: Metrics | None = None,
        rng: Callable[[int, int], int] = random.randint,
    ) -> None:
        self.storage, self.options, self.rng = storage, options, rng
        self.cache = cache if cache is not None else OverLimitCache()
        self.metrics = metrics if metrics is not None else Metrics()
        self.local = LocalRates()

    def check(self, batch: Batch) -> Outcome:
        if not batch.rates and not batch.counters:
            return Outcome(Allow())
        cached = self._cached(batch)
        if cached is not None:
            self.metrics.inc("throttled", cached.name, "cache")
            return Outcome(self._deny_cached(cached, batch.now_ms))
        try:
            verdict = self.storage.decide(batch)
        except StorageError as exc:
            if exc.opened:
                self.metrics.inc("breaker_open", "decide")
            return self._unavailable(batch, str(exc), exc.opened)
        return self._apply(batch, verdict)

    def settle(self, reservation: Reservation, commit: bool, now_ms: int) -> tuple[int, ...]:
        """Commit (upstream succeeded) or release the reservation; raises StorageError."""
        return self.storage.settle(reservation, commit, now_ms)

    # -- cache --------------------------------------------------------------------------------------------------
    def _cached(self, batch: Batch) -> Blocked | None:
        if not self.options.use_cache:
            return None
        keys = [r.key for r in batch.rates if not r.shadow]
        if batch.quota and not batch.quota.shadow:
            keys += [c.key for c in batch.counters]
        if batch.block_key:
            keys.append(batch.block_key)
        # A cached full quota no longer holds when this request's limit is higher (a plan upgraded the same day).
        limits = {c.key: c.limit for c in batch.counters} if batch.quota else {}
        hits = [(k, self.cache.get(k, batch.now_ms)) for k in keys]
        live = [b for k, b in hits if b is not None and not (b.kind == "quota" and limits.get(k, 0) > b.quota)]
        return max(live, key=lambda b: b.until_ms, default=None)

    def _deny_cached(self, b: Blocked, now_ms: int) -> Deny:
        if b.kind == "block":
            return self._deny_block(b.retry_at_ms - now_ms)
        view = LimitView(b.kind, b.name, b.quota, b.window_s, 0, seconds(b.reset_ms - now_ms))
        return self._deny(view, max(b.until_ms, b.retry_at_ms) - now_ms, render([view], view))

    # -- storage failure ----------------------------------------------------------------------------------------
    def _unavailable(self, batch: Batch, error: str, opened: bool) -> Outcome:
        """Redis could not answer: fail-closed limits answer 503; fault-tolerant rate limits are decided in process
        (never waved through); a fault-tolerant quota lets the request through uncharged (counted as fail_open)."""
        self.metrics.inc("redis_errors", "decide")
        q = batch.quota
        closed = [r.name for r in batch.rates if not (r.fault_tolerant or r.shadow)]
        if q and not (q.fault_tolerant or q.shadow):
            closed.append(q.name)
        if closed:
            deny = Deny(503, "rate_limit_unavailable", "Limits cannot be checked right now; please retry shortly.")
            headers = {"Retry-After": str(1 + self._jitter())}
            return Outcome(Deny(deny.status, deny.code, deny.detail, headers), None, error, opened)
        if q and not q.shadow:
            self.metrics.inc("fail_open", "quota")
        if not batch.rates:
            return Outcome(Allow(), None, error, opened)
        self.metrics.inc("degraded", "decide")
        local = Batch(batch.tag, batch.now_ms, batch.rates)
        states = self.local.decide(local)
        allowed = all(s.allowed or r.shadow for r, s in zip(batch.rates, states, strict=True))
        outcome = self._apply(local, Verdict(allowed, False, states), "local")
        return Outcome(outcome.decision, None, error, opened)

    # -- verdict ------------------------------------------------------------------------------------------------
    def _views(self, batch: Batch, verdict: Verdict) -> list[LimitView]:
        # r <= q (IETF RateLimit fields): a tier's burst lets a bucket hold more than q, which is not advertised
        views = [
            LimitView("rate", r.name, r.limit, r.window_s, min(s.remaining, r.limit), seconds(s.reset_ms))
            for r, s in zip(batch.rates, verdict.rates, strict=True)
        ]
        if batch.quota:
            reset_s = seconds(batch.quota.reset_ms - batch.now_ms)
            views += [
                LimitView("quota", batch.quota.name, c.limit, DAY_S, c.remaining, reset_s) for c in verdict.counters
            ]
        return views

    def _apply(self, batch: Batch, verdict: Verdict, source: str = "redis") -> Outcome:
        if verdict.block_until_ms > batch.now_ms and batch.block_key:
            self.metrics.inc("throttled", BLOCK_POLICY, "redis")
            self._cache_block(batch.block_key, verdict.block_until_ms, batch.now_ms)
            return Outcome(self._deny_block(verdict.block_until_ms - batch.now_ms))
        views = self._views(batch, verdict)
        self._count(batch, verdict, source)
        if verdict.allowed:
            headers = render(views) if self.options.with_headers else {}
            res = None
            if verdict.reserved and batch.quota:
                q = batch.quota
                held = tuple(c.key for c, s in zip(q.counters, verdict.counters, strict=True) if s.allowed)
                res = Reservation(held, q.rid, q.res_expiry_ms, q.expire_at_ms, q.fault_tolerant)
            return Outcome(Allow(response_headers=headers), res)
        return Outcome(self._reject(batch, verdict, views))

    def _count(self, batch: Batch, verdict: Verdict, source: str) -> None:
        for r, s in zip(batch.rates, verdict.rates, strict=True):
            if not s.allowed:
                self.metrics.inc("shadow_rejects" if r.shadow else "throttled", r.name, source)
        for c in verdict.counters:
            if batch.quota and not c.allowed:
                self.metrics.inc("shadow_rejects" if batch.quota.shadow else "throttled", batch.quota.name, "redis")
            if batch.quota and c.limit:
                self.metrics.observe_quota(batch.quota.name, (c.used + c.reserved) / c.limit)

    def _reject(self, batch: Batch, verdict: Verdict, views: list[LimitView]) -> Deny:
        """429 for the enforced limit with the longest wait; remember it in the over-limit cache."""
        candidates: list[tuple[int, LimitView, str, bool]] = []  # (retry ms, view, key, cacheable)
        for i, (r, s) in enumerate(zip(batch.rates, verdict.rates, strict=True)):
            if not (s.allowed or r.shadow):
                candidates.append((s.retry_ms, views[i], r.key, True))
        q = batch.quota
        for j, (c, s) in enumerate(zip(batch.counters, verdict.counters, strict=True)):
            if q and not (s.allowed or q.shadow):
                full = s.used >= s.limit  # committed usage, not in-flight reservations that may be released
                retry = q.reset_ms - batch.now_ms if full else 1000
                candidates.append((retry, views[len(batch.rates) + j], c.key, full))
        retry_ms, view, key, cacheable = max(candidates, key=lambda c: c[0])
        if cacheable and self.options.use_cache:
            retry_at = until = batch.now_ms + retry_ms
            if view.kind == "quota":  # trust a full quota for a while only (admin grants), but keep its Retry-After
                until = min(until, batch.now_ms + self.options.quota_cache_max_s * 1000)
            reset_ms = batch.now_ms + view.reset_s * 1000
            blocked = Blocked(until, view.kind, view.name, view.quota, view.window_s, reset_ms, retry_at)
            self.cache.put(key, blocked, batch.now_ms)
        headers = render(views, view) if self.options.with_headers else {}
        return self._deny(view, retry_ms, headers)

    # -- abuse -----------------------------------------------------------------------------------------------------
    def strike(self, strike: Strike) -> StrikeResult:
        """Count an abusive answer (log phase); a new block is counted, cached here and listed. Raises StorageError."""
        result = self.storage.strike(strike)
        if result.new_block:
            self.metrics.inc("abuse_blocks", strike.kind, result.reason)
            self._cache_block(strike.block_key, result.until_ms, strike.now_ms)  # the key decide checks
            self.storage.index_block(strike.key, result.until_ms, strike.now_ms)
        return result

    def _cache_block(self, key: str, until_ms: int, now_ms: int) -> None:
        """Remember a block in process, trusted for at most quota_cache_max_s (an admin may lift it)."""
        if self.options.use_cache:
            trust = min(until_ms, now_ms + self.options.quota_cache_max_s * 1000)
            self.cache.put(key, Blocked(trust, "block", BLOCK_POLICY, 0, 0, until_ms, until_ms), now_ms)

    def _deny_block(self, wait_ms: int) -> Deny:
        headers = {"Retry-After": str(seconds(wait_ms) + self._jitter())}
        detail = "Too many refused requests from this client: it is blocked for a while."
        return Deny(429, "rate_limited", detail, headers, {"reason": "abuse_block", "retry_after": seconds(wait_ms)})

    def _deny(self, view: LimitView, retry_ms: int, headers: dict[str, str]) -> Deny:
        headers = {**headers, "Retry-After": str(seconds(retry_ms) + self._jitter())}
        if view.kind == "quota":
            detail = f"Daily '{view.name}' quota of {view.quota} is used up; it renews at the family's midnight."
            extra = {"limit": view.quota, "remaining": 0, "reset": view.reset_s}
            return Deny(429, "quota_exceeded", detail, headers, extra)
        detail = f"Rate limit '{view.name}' of {view.quota} requests per {view.window_s} s exceeded."
        return Deny(429, "rate_limited", detail, headers, {"limit": view.quota, "window": view.window_s})

    def _jitter(self) -> int:
        return self.rng(0, self.options.jitter_max_s) if self.options.jitter_max_s else 0
