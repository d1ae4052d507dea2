"""sv-quota config: Kong schema DSL (forwarded as config.fields) and the parsed, validated Config."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Any

from storyverse_contracts.tiers import DEFAULT_TIER

from storyverse_plugins.common.redis_pool import RedisSettings
from storyverse_plugins.common.schema_fields import REDIS_FIELDS, parse_redis
from storyverse_plugins.quota.tiers import DEFAULT_PLANS, Occasion, Plan

PERIODS = {"second": 1, "minute": 60, "hour": 3600}
_NAME = re.compile(r"\A[a-z0-9][a-z0-9_-]{0,31}\Z")
_DATE = re.compile(r"\A(\d{4}-)?\d{2}-\d{2}\Z")

_POLICY = {
    "type": "record",
    "fields": (
        {
            "name": {
                "description": "Policy name, used in keys and RateLimit headers.",
                "type": "string",
                "required": True,
            }
        },
        {"limit": {"description": "Requests allowed per period.", "type": "integer", "required": True, "gt": 0}},
        {
            "period": {
                "description": "The period of `limit`.",
                "type": "string",
                "required": True,
                "one_of": list(PERIODS),
            }
        },
        {
            "by": {
                "description": "Who is limited: `ip` (anonymous routes), `user`, or `auto` (the user when a "
                "verified identity exists, else the IP).",
                "type": "string",
                "default": "auto",
                "one_of": ["auto", "ip", "user"],
            }
        },
        {
            "fault_tolerant": {
                "description": "When Redis fails, decide this limit in process (per plugin-server process, so at "
                "most limit x processes; never waved through); false answers 503.",
                "type": "boolean",
                "default": True,
            }
        },
        {
            "shadow": {
                "description": "Evaluate and report, never reject (dark launch of a new limit).",
                "type": "boolean",
                "default": False,
            }
        },
    ),
}

_PLAN = {
    "type": "record",
    "fields": (
        {"tier": {"description": "Tier name as in the token's `tier` claim.", "type": "string", "required": True}},
        {
            "daily": {
                "description": "Stories per local day.",
                "type": "integer",
                "required": True,
                "between": [0, 100000],
            }
        },
        {
            "rate_burst": {
                "description": "Extra burst capacity this tier gets on every user rate-limit policy.",
                "type": "integer",
                "default": 0,
                "between": [0, 100000],
            }
        },
    ),
}

_OCCASION = {
    "type": "record",
    "fields": (
        {
            "date": {
                "description": "Local date `YYYY-MM-DD`, or `MM-DD` every year.",
                "type": "string",
                "required": True,
            }
        },
        {
            "extra": {
                "description": "Stories added on that day.",
                "type": "integer",
                "required": True,
                "between": [1, 1000],
            }
        },
    ),
}

_QUOTA = {
    "type": "record",
    "fields": (
        {"enabled": {"description": "Charge this route against the daily quota.", "type": "boolean", "default": False}},
        {"name": {"description": "Quota name in headers and keys.", "type": "string", "default": "stories"}},
        {
            "scope": {
                "description": "Whose quota: the whole `family` (tier of the family) or each `user`.",
                "type": "string",
                "default": "family",
                "one_of": ["family", "user"],
            }
        },
        {
            "default_tier": {
                "description": "Plan used when the token has no known tier.",
                "type": "string",
                "default": DEFAULT_TIER,
            }
        },
        {
            "child_limit_claim": {
                "description": "Identity claim with a child's own daily limit (parental control), checked too.",
                "type": "string",
                "default": "daily_story_limit",
            }
        },
        {"occasions": {"description": "Special occasions that add stories.", "type": "array", "elements": _OCCASION}},
        {
            "methods": {
                "description": "Only these methods are charged (empty: every request on the route; declaring a "
                "POST-only route instead saves a PDK call).",
                "type": "array",
                "elements": {"type": "string"},
            }
        },
        {
            "fault_tolerant": {
                "description": "Let requests through uncharged when Redis fails (default: fail closed with 503).",
                "type": "boolean",
                "default": False,
            }
        },
        {"shadow": {"description": "Count and report, never reject.", "type": "boolean", "default": False}},
        {
            "reservation_ttl": {
                "description": "Seconds an unsettled unit is held, then charged (longer than upstream timeouts).",
                "type": "integer",
                "default": 120,
                "between": [5, 3600],
            }
        },
        {
            "default_tz": {
                "description": "Time zone when the token has no valid `tz`.",
                "type": "string",
                "default": "UTC",
            }
        },
    ),
}


def _int(description: str, default: int, low: int, high: int) -> dict[str, Any]:
    return {"description": description, "type": "integer", "default": default, "between": [low, high]}


_ABUSE = {
    "type": "record",
    "fields": (
        {
            "enabled": {
                "description": "Count 401/403/429 answers per IP and account (log phase) and block abusers "
                "temporarily; the block is enforced on routes whose subject is that IP or account. Switch it off "
                "on routes a blocked address must still reach (a NAT or school shares one IP): JWKS, discovery, "
                "token refresh.",
                "type": "boolean",
                "default": True,
            }
        },
        {
            "statuses": {
                "description": "Response statuses that count as a strike.",
                "type": "array",
                "elements": {"type": "integer", "between": [400, 599]},
                "default": [401, 403, 429],
            }
        },
        {
            "gateway_403": {
                "description": "Count a 403 the gateway answered itself (sv-rbac's role, age and feature rules: no "
                "upstream status) as a strike. Off by default: a child's misbehaving app is refused, not blocked; "
                "a backend's 403 (another family's data) still counts.",
                "type": "boolean",
                "default": False,
            }
        },
        {"window": _int("Seconds in which `threshold` strikes lead to a block.", 60, 1, 86400)},
        {"threshold": _int("Strikes inside `window` that start a block.", 20, 1, 100000)},
        {"block_base": _int("First block, in seconds; each further block doubles it.", 60, 1, 86400)},
        {"block_max": _int("Longest block, in seconds.", 3600, 1, 604800)},
        {"memory": _int("Seconds after a block during which the next one is longer.", 86400, 1, 2592000)},
        {
            "login": {
                "description": "This is a login route: count distinct accounts whose login failed (401) per IP "
                "(credential stuffing); reads the request body on this route only.",
                "type": "boolean",
                "default": False,
            }
        },
        {"login_field": {"description": "JSON body field naming the account.", "type": "string", "default": "email"}},
        {"login_distinct": _int("Distinct failed accounts per IP inside `login_window` that block it.", 10, 2, 10000)},
        {"login_window": _int("Seconds over which distinct failed logins are counted.", 600, 1, 86400)},
    ),
}

Schema = (
    {"policies": {"description": "Rate-limit policies of this route (GCRA).", "type": "array", "elements": _POLICY}},
    {
        "plans": {
            "description": "Tiers (default basic 5/day, premium 20/day + burst 5).",
            "type": "array",
            "elements": _PLAN,
        }
    },
    {"quota": {"description": "Daily tier quota on story creation/generation.", **_QUOTA}},
    {"abuse": {"description": "Abuse detection: temporary, growing blocks after repeated 401/403/429.", **_ABUSE}},
    {
        "retry_after_jitter_max": {
            "description": "Up to this many seconds are added at random to Retry-After on 429.",
            "type": "integer",
            "default": 1,
            "between": [0, 60],
        }
    },
    {
        "response_headers": {
            "description": "When to send RateLimit and quota headers: `always`, `on_deny` (saves a PDK call on "
            "allowed requests) or `never` (Retry-After is always sent on 429).",
            "type": "string",
            "default": "always",
            "one_of": ["always", "on_deny", "never"],
        }
    },
    {
        "overlimit_cache": {
            "description": "Remember subjects over a limit in process until their reset (no Redis call for them).",
            "type": "boolean",
            "default": True,
        }
    },
    {
        "quota_cache_max": {
            "description": "Longest a full daily quota is cached in process, in seconds (admin grants apply after).",
            "type": "integer",
            "default": 30,
            "between": [0, 86400],
        }
    },
    {
        "breaker_ms": {
            "description": "Skip Redis for this many ms once it is unreachable, or has timed out with no success "
            "for this long (fault_tolerant decides meanwhile; each opening is counted and logged).",
            "type": "integer",
            "default": 1000,
            "between": [0, 60000],
        }
    },
    *REDIS_FIELDS,
)


@dataclass(frozen=True)
class RatePolicy:
    name: str
    limit: int
    period: str
    by: str = "auto"
    fault_tolerant: bool = True
    shadow: bool = False

    @property
    def window_s(self) -> int:
        return PERIODS[self.period]


@dataclass(frozen=True)
class QuotaConfig:
    enabled: bool = False
    name: str = "stories"
    scope: str = "family"
    default_tier: str = DEFAULT_TIER
    child_limit_claim: str = "daily_story_limit"
    occasions: tuple[Occasion, ...] = ()
    methods: tuple[str, ...] = ()
    fault_tolerant: bool = False
    shadow: bool = False
    reservation_ttl: int = 120
    default_tz: str = "UTC"


@dataclass(frozen=True)
class AbuseConfig:
    enabled: bool = True
    statuses: frozenset[int] = frozenset((401, 403, 429))
    gateway_403: bool = False
    window: int = 60
    threshold: int = 20
    block_base: int = 60
    block_max: int = 3600
    memory: int = 86400
    login: bool = False
    login_field: str = "email"
    login_distinct: int = 10
    login_window: int = 600


@dataclass(frozen=True)
class Config:
    policies: tuple[RatePolicy, ...] = ()
    plans: tuple[Plan, ...] = DEFAULT_PLANS
    quota: QuotaConfig = field(default_factory=QuotaConfig)
    abuse: AbuseConfig = field(default_factory=AbuseConfig)
    retry_after_jitter_max: int = 1
    response_headers: str = "always"
    overlimit_cache: bool = True
    quota_cache_max: int = 30
    breaker_ms: int = 1000
    redis: RedisSettings = field(default_factory=RedisSettings)

    def plan(self, tier: str | None) -> Plan:
        by_tier = {p.tier: p for p in self.plans}
        return by_tier.get(tier or "") or by_tier[self.quota.default_tier]

    @property
    def ip_only(self) -> bool:
        """Every policy is keyed by IP (anonymous route): no identity is read."""
        return bool(self.policies) and all(p.by == "ip" for p in self.policies)

    @property
    def fail_open(self) -> bool:
        """Whether an unexpected error lets the request through: only if every enforced limit is fault tolerant."""
        quota_closed = self.quota.enabled and not (self.quota.fault_tolerant or self.quota.shadow)
        return not quota_closed and all(p.fault_tolerant or p.shadow for p in self.policies)


def _val(raw: dict[str, Any] | None, name: str, default: Any) -> Any:
    value = (raw or {}).get(name)
    return default if value is None else value


def _policy(raw: dict[str, Any]) -> RatePolicy:
    d = RatePolicy("", 1, "second")
    p = RatePolicy(
        name=str(raw.get("name") or ""),
        limit=int(_val(raw, "limit", 0)),
        period=str(_val(raw, "period", "")),
        by=str(_val(raw, "by", d.by)),
        fault_tolerant=bool(_val(raw, "fault_tolerant", d.fault_tolerant)),
        shadow=bool(_val(raw, "shadow", d.shadow)),
    )
    if not _NAME.match(p.name):
        raise ValueError(f"policy name {p.name!r} must match {_NAME.pattern}")
    if p.limit <= 0 or p.period not in PERIODS or p.by not in ("auto", "ip", "user"):
        raise ValueError(f"policy {p.name}: limit must be > 0, period one of {list(PERIODS)}, by auto|ip|user")
    return p


def _occasion(raw: dict[str, Any]) -> Occasion:
    o = Occasion(str(raw.get("date") or ""), int(_val(raw, "extra", 0)))
    if not _DATE.match(o.date) or o.extra <= 0:
        raise ValueError(f"occasion {o.date!r}: date must be YYYY-MM-DD or MM-DD and extra > 0")
    year = o.date[:4] if len(o.date) == 10 else "2000"  # 2000 is a leap year: 02-29 is a valid recurring date
    dt.date.fromisoformat(f"{year}-{o.date[-5:]}")
    return o


def _quota(raw: dict[str, Any] | None) -> QuotaConfig:
    d = QuotaConfig()
    q = QuotaConfig(
        enabled=bool(_val(raw, "enabled", d.enabled)),
        name=str(_val(raw, "name", d.name)),
        scope=str(_val(raw, "scope", d.scope)),
        default_tier=str(_val(raw, "default_tier", d.default_tier)),
        child_limit_claim=str(_val(raw, "child_limit_claim", d.child_limit_claim)),
        occasions=tuple(_occasion(o) for o in _val(raw, "occasions", ()) or ()),
        methods=tuple(str(m).upper() for m in _val(raw, "methods", ()) or ()),
        fault_tolerant=bool(_val(raw, "fault_tolerant", d.fault_tolerant)),
        shadow=bool(_val(raw, "shadow", d.shadow)),
        reservation_ttl=int(_val(raw, "reservation_ttl", d.reservation_ttl)),
        default_tz=str(_val(raw, "default_tz", d.default_tz)),
    )
    if not _NAME.match(q.name) or q.scope not in ("family", "user") or not 5 <= q.reservation_ttl <= 3600:
        raise ValueError("quota: name must be a short slug, scope family|user, reservation_ttl 5..3600 s")
    return q


def _abuse(raw: dict[str, Any] | None) -> AbuseConfig:
    d = AbuseConfig()
    values = {name: _val(raw, name, getattr(d, name)) for name in AbuseConfig.__dataclass_fields__}
    a = AbuseConfig(
        enabled=bool(values["enabled"]),
        statuses=frozenset(int(x) for x in values["statuses"]),
        gateway_403=bool(values["gateway_403"]),
        login=bool(values["login"]),
        login_field=str(values["login_field"]),
        **{k: int(values[k]) for k in ("window", "threshold", "block_base", "block_max", "memory")},
        **{k: int(values[k]) for k in ("login_distinct", "login_window")},
    )
    if min(a.window, a.threshold, a.block_base, a.memory, a.login_window) < 1 or a.login_distinct < 2:
        raise ValueError("abuse: window, threshold, block_base, memory, login_window must be >= 1, login_distinct >= 2")
    if a.block_max < a.block_base:
        raise ValueError("abuse: block_max must be >= block_base")
    return a


def _plans(raw: list | None) -> tuple[Plan, ...]:
    if not raw:
        return DEFAULT_PLANS
    plans = tuple(Plan(str(p.get("tier") or ""), int(_val(p, "daily", -1)), int(_val(p, "rate_burst", 0))) for p in raw)
    if any(not p.tier or p.daily < 0 or p.rate_burst < 0 for p in plans):
        raise ValueError("plans: every plan needs a tier, daily >= 0 and rate_burst >= 0")
    return plans


def check_rules(cfg: Config) -> Config:
    """Cross-field rules Kong's field-level DSL cannot express (a route's config is rejected at start)."""
    names = [p.name for p in cfg.policies] + ([cfg.quota.name] if cfg.quota.enabled else [])
    if len(set(names)) != len(names):
        raise ValueError("policy and quota names must be unique")
    if not names:
        raise ValueError("configure at least one policy or enable the quota")
    by_ip = {p.by == "ip" for p in cfg.policies}
    if (by_ip == {True, False}) or (True in by_ip and cfg.quota.enabled):
        raise ValueError(
            "`by: ip` policies cannot be mixed with user policies or the quota on one route: a request's limits "
            "must share one subject (one hash slot, one Redis round trip)"
        )
    if cfg.abuse.login and not cfg.ip_only:
        raise ValueError("abuse.login needs a route whose policies are all `by: ip` (an anonymous login route)")
    tiers = [p.tier for p in cfg.plans]
    if len(set(tiers)) != len(tiers) or cfg.quota.default_tier not in tiers:
        raise ValueError("plans: tiers must be unique and include quota.default_tier")
    return cfg


def parse_config(raw: dict[str, Any]) -> Config:
    """The validated Config; Kong sends None for unset fields plus its own `__*` keys, which are ignored."""
    d = Config()
    return check_rules(
        Config(
            policies=tuple(_policy(p) for p in raw.get("policies") or ()),
            plans=_plans(raw.get("plans")),
            quota=_quota(raw.get("quota")),
            abuse=_abuse(raw.get("abuse")),
            retry_after_jitter_max=int(_val(raw, "retry_after_jitter_max", d.retry_after_jitter_max)),
            response_headers=str(_val(raw, "response_headers", d.response_headers)),
            overlimit_cache=bool(_val(raw, "overlimit_cache", d.overlimit_cache)),
            quota_cache_max=int(_val(raw, "quota_cache_max", d.quota_cache_max)),
            breaker_ms=int(_val(raw, "breaker_ms", d.breaker_ms)),
            redis=parse_redis(raw),
        )
    )
