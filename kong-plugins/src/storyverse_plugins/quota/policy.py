"""Which limits apply to a request, with their keys: config + identity + client IP + clock -> Batch (pure)."""

from __future__ import annotations

import uuid
import zlib
from collections.abc import Callable
from typing import Any

from storyverse_contracts import keys

from storyverse_plugins.quota.schema import Config, RatePolicy
from storyverse_plugins.quota.strategies import Batch, Counter, QuotaPlan, RateLimit, Strike
from storyverse_plugins.quota.tiers import Plan, daily_limit, local_day

DAY_MS = 86_400_000
EXPIRY_JITTER_MS = 3_600_000  # spread counter expiry over an hour so midnight does not expire everything at once


def verified(identity: Any) -> dict | None:
    """The sv-jwt identity when it is usable (a dict with a subject)."""
    return identity if isinstance(identity, dict) and identity.get("sub") else None


def build_batch(
    cfg: Config,
    identity: dict | None,
    ip: str | None,
    method: str | None,
    now_s: float,
    new_rid: Callable[[], str] = lambda: uuid.uuid4().hex[:16],
) -> Batch:
    """All limits of this request. One subject (family, user or IP) and so one hash slot for every key."""
    ident = None if cfg.ip_only else verified(identity)
    tag = keys.subject_tag(ident, ip)
    plan = cfg.plan(ident.get("tier") if ident else None)
    rates = tuple(_rate(p, tag, ident, plan) for p in cfg.policies)
    charged = cfg.quota.enabled and ident is not None and (not cfg.quota.methods or method in cfg.quota.methods)
    quota = _quota(cfg, ident, tag, plan, now_s, new_rid) if charged and ident else None
    block = keys.block_key(abuse_subject(tag, ident)[0]) if cfg.abuse.enabled else None
    return Batch(tag=tag, now_ms=int(now_s * 1000), rates=rates, quota=quota, block_key=block)


# Statuses after which the backend may have done the work although the client did not see it succeed: the gateway
# timed out waiting (504), the upstream connection broke mid-answer or answered garbage (502), the client went away
# (499), or there is no status at all. Kong 3.9.1 renders nginx's upstream 502/504 through its error handler
# (kong/templates/nginx_kong.lua:102, kong/error_handlers.lua:25-27); 499 is nginx's "client closed request".
UNKNOWN_OUTCOME = frozenset((0, 499, 502, 504))


def charges(status: int) -> bool:
    """Whether a held quota unit is charged in the log phase (the rule docs/api.md states for clients).

    Charge when the request succeeded (1xx-3xx) or its outcome is unknown (UNKNOWN_OUTCOME): a generation that
    outlives the gateway's read timeout is still a story the family gets, so a timeout must not make it free.
    Refund only on a definite failure: any other 4xx (refused by the gateway or the backend: nothing was made) or
    5xx (the backend, or the gateway before proxying, answered that it failed). A unit never settled (sv-quota-log
    dead or hung at log time, Redis unreachable) lapses after reservation_ttl and counts as charged (decide.lua).
    """
    return status < 400 or status in UNKNOWN_OUTCOME


def abuse_subject(tag: str, ident: dict | None) -> tuple[str, str, str]:
    """(abuse key, kind, subject) of a request: its account when verified, else its IP (the tag's)."""
    if ident:
        return keys.abuse_key(tag, ident["sub"]), "account", str(ident["sub"])
    return keys.abuse_key(tag), "ip", tag[4:-1]


def build_strike(cfg: Config, identity: dict | None, ip: str | None, fingerprint: str, now_s: float) -> Strike:
    """The strike for an abusive answer, keyed as build_batch keys the block check of the same subject."""
    ident = None if cfg.ip_only else verified(identity)
    tag = keys.subject_tag(ident, ip)
    key, kind, subject = abuse_subject(tag, ident)
    a = cfg.abuse
    login_key = keys.login_failures_key(tag) if a.login and fingerprint and ident is None else None
    return Strike(
        key=key,
        block_key=keys.block_key(key),
        kind=kind,
        subject=subject,
        now_ms=int(now_s * 1000),
        window_ms=a.window * 1000,
        threshold=a.threshold,
        base_ms=a.block_base * 1000,
        max_ms=a.block_max * 1000,
        memory_ms=a.memory * 1000,
        login_key=login_key,
        fingerprint=fingerprint if login_key else "",
        distinct=a.login_distinct,
        login_window_ms=a.login_window * 1000,
    )


def _rate(p: RatePolicy, tag: str, ident: dict | None, plan: Plan) -> RateLimit:
    sub = ident["sub"] if ident and p.by != "ip" else None
    capacity = p.limit + (plan.rate_burst if sub else 0)
    return RateLimit(p.name, keys.rate_key(tag, p.name, sub), p.limit, p.window_s, capacity, p.shadow, p.fault_tolerant)


def child_limit(ident: dict, claim: str) -> int | None:
    """A child's own daily limit from the parental-control claim, when present and sane."""
    value = ident.get(claim)
    if isinstance(value, bool) or not isinstance(value, int | str):
        return None
    try:
        limit = int(value)
    except ValueError:
        return None
    return limit if limit >= 0 else None


def _counter(scope: str, tag: str, date: str, limit: int) -> Counter:
    return Counter(scope, keys.quota_key(tag, scope, date), limit)


def _quota(cfg: Config, ident: dict, tag: str, plan: Plan, now_s: float, new_rid: Callable[[], str]) -> QuotaPlan:
    q = cfg.quota
    day = local_day(now_s, ident.get("tz"), q.default_tz)
    scope = "fam" if q.scope == "family" and ident.get("family_id") else "u:" + str(ident["sub"])
    counters = [_counter(scope, tag, day.date, daily_limit(plan, q.occasions, day.date))]
    own = child_limit(ident, q.child_limit_claim)
    if own is not None:
        counters.append(_counter("c:" + str(ident["sub"]), tag, day.date, own))
    now_ms, reset_ms = int(now_s * 1000), int(day.reset_s * 1000)
    return QuotaPlan(
        name=q.name,
        counters=tuple(counters),
        reset_ms=reset_ms,
        expire_at_ms=reset_ms + DAY_MS + zlib.crc32(tag.encode()) % EXPIRY_JITTER_MS,
        rid=new_rid(),
        res_expiry_ms=now_ms + q.reservation_ttl * 1000,
        shadow=q.shadow,
        fault_tolerant=q.fault_tolerant,
    )
