"""The algorithms, as pure functions over plain values: GCRA for rate limits, a reserve/commit counter for quotas.

quota/lua/decide.lua is the same algorithm for Redis; MemoryStorage runs these functions, and the tests hold both
storages to identical results. GCRA (as redis-cell) keeps one number per key, the theoretical arrival time (TAT):
a policy of `limit` per `window` allows `capacity` (= limit + tier burst) requests at once and then one every
window/limit, with no window boundary at which twice the limit could pass.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

EPS = 1e-9


@dataclass(frozen=True)
class RateLimit:
    """One rate-limit policy resolved for a request's subject."""

    name: str
    key: str
    limit: int
    window_s: int
    capacity: int
    shadow: bool = False
    fault_tolerant: bool = True

    @property
    def emission_ms(self) -> float:
        return self.window_s * 1000.0 / self.limit


@dataclass(frozen=True)
class Counter:
    """One daily quota counter (the family's or user's, or a child's own limit) resolved for today."""

    scope: str
    key: str  # the day's counter hash: used, grant, r:<rid> per held unit
    limit: int


@dataclass(frozen=True)
class QuotaPlan:
    """What the quota part of a batch needs: names, today's reset, and the reservation to take."""

    name: str
    counters: tuple[Counter, ...]
    reset_ms: int  # next local midnight, epoch ms
    expire_at_ms: int  # counters live on a day after reset (usage reads), with per-subject jitter
    rid: str  # reservation id ('' = check only)
    res_expiry_ms: int
    shadow: bool = False
    fault_tolerant: bool = False


@dataclass(frozen=True)
class Batch:
    """Every limit of one request: one subject, one hash slot, one script call."""

    tag: str
    now_ms: int
    rates: tuple[RateLimit, ...] = ()
    quota: QuotaPlan | None = None
    block_key: str | None = None  # the subject's block key (keys.block_key): a live block rejects in the same script

    @property
    def counters(self) -> tuple[Counter, ...]:
        return self.quota.counters if self.quota else ()


@dataclass(frozen=True)
class RateState:
    allowed: bool
    remaining: int
    reset_ms: int  # until the bucket is full again (IETF `t`)
    retry_ms: int  # until the next request would pass (0 when allowed)


@dataclass(frozen=True)
class CounterState:
    allowed: bool
    limit: int  # plan limit + occasions + admin grant
    used: int  # committed units
    reserved: int  # in-flight reservations, including this request's

    @property
    def remaining(self) -> int:
        return max(0, self.limit - self.used - self.reserved)


@dataclass(frozen=True)
class Verdict:
    """What storage decided for a batch; nothing was written unless `allowed`."""

    allowed: bool
    reserved: bool
    rates: tuple[RateState, ...] = ()
    counters: tuple[CounterState, ...] = ()
    block_until_ms: int = 0  # > 0: the subject is blocked for abuse until then (and nothing was written)


def gcra_step(tat: float | None, now: float, emission: float, capacity: int) -> tuple[RateState, float | None]:
    """One GCRA decision: the state to report and the new TAT to store (None when denied: nothing is stored)."""
    tat = now if tat is None or tat < now else tat
    new_tat = tat + emission
    allow_at = new_tat - capacity * emission
    if now < allow_at:
        return RateState(False, 0, math.ceil(tat - now), math.ceil(allow_at - now)), None
    remaining = math.floor((now - new_tat) / emission + capacity + EPS)
    return RateState(True, remaining, math.ceil(new_tat - now), 0), new_tat


def counter_step(used: int, grant: int, held: int, limit: int) -> CounterState:
    """Whether one more unit fits: committed + in-flight + 1 within plan + grant."""
    eff = limit + grant
    return CounterState(used + held + 1 <= eff, eff, used, held)


def verdict_of(
    batch: Batch,
    allowed: bool,
    reserved: bool,
    block_until: float,
    tats: tuple[float | None, ...],
    counters: tuple[tuple[int, int, int], ...],
) -> Verdict:
    """What clients see, from the raw state a decision read (decide.lua's answer, or MemoryStorage's): the TAT of
    each rate before this request, each counter's (used, grant, held by others) and the block's end. Nothing here
    decides: `allowed` and `reserved` are the storage's, made with the same formulas (gcra_step, counter_step)."""
    now = batch.now_ms
    rates = tuple(gcra_step(t, now, r.emission_ms, r.capacity)[0] for r, t in zip(batch.rates, tats, strict=True))
    if block_until > now:
        return Verdict(False, False, rates, (), int(block_until))
    states = []
    for c, (used, grant, held) in zip(batch.counters, counters, strict=True):
        s = counter_step(used, grant, held, c.limit)
        states.append(CounterState(s.allowed, s.limit, s.used, s.reserved + 1) if reserved and s.allowed else s)
    return Verdict(allowed, reserved, rates, tuple(states))


def overall(batch: Batch, rates: tuple[RateState, ...], counters: tuple[CounterState, ...]) -> bool:
    """Allowed when every enforced limit allows (shadow limits only report)."""
    quota_shadow = bool(batch.quota and batch.quota.shadow)
    return all(s.allowed or r.shadow for r, s in zip(batch.rates, rates, strict=True)) and all(
        c.allowed or quota_shadow for c in counters
    )


@dataclass(frozen=True)
class Reservation:
    """A held quota unit, handed from access to log through kong.ctx.shared (plain values only)."""

    keys: tuple[str, ...]  # the counter hashes holding the unit (field r:<rid>)
    rid: str
    res_expiry_ms: int
    expire_at_ms: int
    fault_tolerant: bool = False

    def to_shared(self) -> dict:
        return {
            "k": list(self.keys),
            "r": self.rid,
            "x": self.res_expiry_ms,
            "e": self.expire_at_ms,
            "f": self.fault_tolerant,
        }

    @classmethod
    def from_shared(cls, value: dict) -> Reservation:
        return cls(
            keys=tuple(str(k) for k in value["k"]),
            rid=str(value["r"]),
            res_expiry_ms=int(value["x"]),
            expire_at_ms=int(value["e"]),
            fault_tolerant=bool(value.get("f", False)),
        )


@dataclass(frozen=True)
class Strike:
    """One abusive answer (401/403/429) to a subject, with the detection policy (quota/lua/abuse.lua)."""

    key: str  # the subject's abuse hash
    block_key: str  # the subject's block key (what decide.lua reads)
    kind: str  # "ip" | "account"
    subject: str  # the IP or the account id, for the admin list
    now_ms: int
    window_ms: int
    threshold: int
    base_ms: int
    max_ms: int
    memory_ms: int
    login_key: str | None = None  # set on a failed login: the IP's distinct-failure set
    fingerprint: str = ""
    distinct: int = 0
    login_window_ms: int = 0


@dataclass(frozen=True)
class StrikeResult:
    blocked: bool
    until_ms: int
    level: int
    duration_ms: int
    new_block: bool  # this strike started the block
    reason: str  # "strikes" | "credential_stuffing" | "blocked" (already blocked) | ""
    strikes: int
    distinct_failures: int


@dataclass
class AbuseState:
    """What abuse.lua keeps in a subject's hash (MemoryStorage's copy)."""

    until: int = 0
    n: int = 0
    win: int = 0
    level: int = 0
    seen: int = 0
    reason: str = ""
    expires_at: int = 0


def strike_step(state: AbuseState, failures: set[str] | None, s: Strike) -> StrikeResult:
    """abuse.lua in Python (MemoryStorage); mutates state and failures exactly as the script does."""
    now = s.now_ms
    if state.until > now:
        return StrikeResult(True, state.until, state.level, 0, False, "blocked", 0, 0)
    if state.win <= now:
        state.n, state.win = 0, now + s.window_ms
    state.n += 1
    reason = "strikes" if state.n >= s.threshold else ""
    count = 0
    if s.fingerprint and failures is not None:
        failures.add(s.fingerprint)
        count = len(failures)
        if count >= s.distinct:
            reason = "credential_stuffing"
    if state.seen > 0 and state.seen + s.memory_ms <= now:
        state.level = 0
    if reason:
        state.level += 1
        duration = int(min(s.base_ms * 2 ** (state.level - 1), s.max_ms))
        strikes = state.n
        state.until, state.n, state.win, state.seen, state.reason = now + duration, 0, 0, now, reason
        state.expires_at = state.until + s.memory_ms
        if failures is not None:
            failures.clear()
        return StrikeResult(True, state.until, state.level, duration, True, reason, strikes, count)
    keep = state.win - now
    if state.seen > 0:
        keep = max(keep, state.seen + s.memory_ms - now)
    state.expires_at = now + max(1, keep)
    return StrikeResult(False, 0, state.level, 0, False, "", state.n, count)
