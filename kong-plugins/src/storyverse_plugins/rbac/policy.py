"""The authorization decision: identity claims + the route's compiled rules + request facts + clock -> Decision.

Pure: no PDK, no I/O. Check order (the first refusal wins): identity (401), role per method, family ownership,
child controls (allowed hours, age band, content rating, generation feature). Anything unreadable is refused.

Codes: 401 `unauthenticated` / `invalid_identity`; 403 `forbidden_role`, `child_method_restricted`,
`forbidden_family`, `outside_allowed_hours`, `age_restricted`, `content_restricted`, `feature_not_allowed`,
`invalid_claims`; 500 `rbac_misconfigured` (a declared capture the route does not provide).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from storyverse_plugins.common.decision import Allow, Decision, Deny
from storyverse_plugins.rbac.hours import BadClaim, allowed_now
from storyverse_plugins.rbac.schema import ROLES, Config, Owned

MAX_CHILDREN = 64
MAX_ID_LEN = 128


@dataclass(frozen=True)
class MethodSet:
    """The methods one role may use: `m in s` is `default XOR (m in exceptions)` (an unbounded set, finitely told)."""

    default: bool
    exceptions: frozenset[str] = frozenset()

    def __contains__(self, method: object) -> bool:
        return self.default != (method in self.exceptions)

    def covers(self, candidates: frozenset[str] | None) -> bool:
        """Every candidate allowed (None: any method at all)."""
        if candidates is None:
            return self.default and not self.exceptions
        return all(m in self for m in candidates)

    def uniform(self, candidates: frozenset[str] | None) -> bool:
        """Same answer for every candidate, so the request's method need not be read."""
        if candidates is None:
            return not self.exceptions
        return len({m in self for m in candidates}) <= 1


def _method_set(cfg: Config, role: str) -> MethodSet:
    decided: dict[str, bool] = {}
    default = False
    for rule in cfg.rules:
        if rule.methods is None:
            default = role in rule.roles
            break
        for method in rule.methods:
            decided.setdefault(method, role in rule.roles)
    return MethodSet(default, frozenset(m for m, ok in decided.items() if ok != default))


def _without(base: MethodSet, denied: frozenset[str]) -> MethodSet:
    if base.default:
        return MethodSet(True, base.exceptions | denied)
    return MethodSet(False, base.exceptions - denied)


@dataclass(frozen=True)
class Caller:
    """A usable sv-jwt identity: the claims every check relies on, typed; `claims` keeps the rest."""

    sub: str
    role: str
    family_id: str
    claims: Mapping[str, Any]


@dataclass(frozen=True)
class Facts:
    """What the handler read from the request (only what `Policy.needs` asked for)."""

    method: str | None = None  # None: not read, the outcome is the same for every candidate method
    route_methods: frozenset[str] | None = None  # the route's `methods` when known (None: any)
    captures: Mapping[str, Any] | None = None  # the named URI captures


@dataclass(frozen=True)
class Needs:
    method: bool = False
    captures: bool = False


def _text(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= MAX_ID_LEN


def read_caller(identity: Any) -> Caller | None:
    """The caller, or None when the identity is unusable (missing or malformed claims)."""
    if not isinstance(identity, Mapping):
        return None
    sub, role, family = identity.get("sub"), identity.get("role"), identity.get("family_id")
    if not (_text(sub) and role in ROLES and _text(family)):
        return None
    return Caller(sub, role, family, identity)


def anonymous(identity: Any) -> bool:
    """No identity at all (msgpack turns an empty dict into [])."""
    return identity is None or identity == [] or identity == {}


@dataclass(frozen=True)
class Policy:
    cfg: Config
    base: Mapping[str, MethodSet] = field(default_factory=dict)  # from the rules alone
    allowed: Mapping[str, MethodSet] = field(default_factory=dict)  # with the child restrictions

    @classmethod
    def compile(cls, cfg: Config) -> Policy:
        if not cfg.rules:  # a public route without rules: every identified caller too
            base = {role: MethodSet(True) for role in ROLES}
        else:
            base = {role: _method_set(cfg, role) for role in ROLES}
        allowed = dict(base, child=_without(base["child"], cfg.child_denied_methods))
        return cls(cfg, base, allowed)

    def overrides(self, caller: Caller) -> bool:
        return caller.role == "admin" and self.cfg.admin_override

    def needs(self, caller: Caller | None, route_methods: frozenset[str] | None = None) -> Needs:
        """Which request facts the decision for this caller depends on (each is one PDK round trip)."""
        if caller is None or self.overrides(caller):
            return Needs()
        method = not self.allowed[caller.role].uniform(route_methods)
        captures = bool(self.cfg.owned) or (caller.role == "child" and self.cfg.kind_capture is not None)
        return Needs(method, captures)

    def decide(self, identity: Any, facts: Facts, now_s: float) -> Decision:
        cfg = self.cfg
        caller = read_caller(identity)
        if caller is None:
            if not anonymous(identity):
                return _unauthenticated(cfg, "invalid_identity", "The verified identity is incomplete.")
            if not cfg.public:
                return _unauthenticated(cfg, "unauthenticated", "This route needs a signed-in user.")
            return self._allow(None)
        if self.overrides(caller):
            return Allow()
        deny = self._role(caller, facts) or self._ownership(caller, facts.captures)
        if deny is None and caller.role == "child":
            deny = self._child(caller, facts, now_s)
        return deny or self._allow(caller)

    # --- checks: each returns a Deny or None -----------------------------------------------------------------------

    def _role(self, caller: Caller, facts: Facts) -> Deny | None:
        # Upper-case: nginx refuses lower-case methods, but a backend framework may upper-case them (werkzeug).
        method = facts.method.upper() if isinstance(facts.method, str) and facts.method else None
        candidates = frozenset({method}) if method else facts.route_methods
        if self.allowed[caller.role].covers(candidates):
            return None
        what = method[:16] if method else "use"
        if caller.role == "child" and self.base["child"].covers(candidates):
            return Deny(403, "child_method_restricted", f"Children may not {what} this resource.")
        return Deny(403, "forbidden_role", f"The {caller.role} role may not {what} this resource.")

    def _ownership(self, caller: Caller, captures: Mapping[str, Any] | None) -> Deny | None:
        for owned in self.cfg.owned:
            value = (captures or {}).get(owned.name)
            if value is None:
                if owned.optional:
                    continue
                return _misconfigured(f"the route has no {owned.name!r} capture")
            if not _owns(caller, owned, value):
                return Deny(403, "forbidden_family", f"The {owned.name} in the path is not in your family.")
        return None

    def _child(self, caller: Caller, facts: Facts, now_s: float) -> Deny | None:
        try:
            return (
                self._hours(caller, now_s)
                or self._age(caller)
                or self._content(caller)
                or self._feature(caller, facts.captures)
            )
        except BadClaim as exc:
            return Deny(403, "invalid_claims", f"The access token's parental controls are unreadable: {exc}.")

    def _hours(self, caller: Caller, now_s: float) -> Deny | None:
        if not self.cfg.enforce_hours:
            return None
        window = caller.claims.get("allowed_hours")
        if window is None:
            raise BadClaim("no allowed_hours")
        if allowed_now(window, caller.claims.get("tz"), now_s):
            return None
        return Deny(403, "outside_allowed_hours", "Outside the hours your parent allowed.")

    def _age(self, caller: Caller) -> Deny | None:
        cfg = self.cfg
        if cfg.min_age_band is None:
            return None
        band = caller.claims.get("age_band")
        if band not in cfg.age_bands:
            raise BadClaim("age_band is not a known band")
        if cfg.age_bands.index(band) >= cfg.age_bands.index(cfg.min_age_band):
            return None
        return Deny(403, "age_restricted", f"This route is for age band {cfg.min_age_band} and older.")

    def _content(self, caller: Caller) -> Deny | None:
        floor = self.cfg.min_content_rating
        if floor is None or self._rank(child_rating(caller, self.cfg.content_ratings)) >= self._rank(floor):
            return None
        return Deny(403, "content_restricted", f"This content is rated {floor}, above what your parent allowed.")

    def _feature(self, caller: Caller, captures: Mapping[str, Any] | None) -> Deny | None:
        cfg = self.cfg
        kind = cfg.generation_kind
        if cfg.kind_capture is not None:
            kind = (captures or {}).get(cfg.kind_capture)
            if kind is None:
                return _misconfigured(f"the route has no {cfg.kind_capture!r} capture")
        if kind is None:
            return None
        features = caller.claims.get("features")
        if not isinstance(features, list | tuple) or not all(isinstance(f, str) for f in features):
            raise BadClaim("features is not a list of generation kinds")
        if kind in features:
            return None
        return Deny(403, "feature_not_allowed", f"{str(kind)[:32]} generation is not allowed by your parent.")

    # --- the allowed outcome -----------------------------------------------------------------------------------------

    def _rank(self, rating: str) -> int:
        return self.cfg.content_ratings.index(rating)

    def _allow(self, caller: Caller | None) -> Decision:
        """Allow, forwarding the effective content rating when it is not the one sv-jwt already forwarded."""
        cfg = self.cfg
        ratings = [cfg.max_content_rating] if cfg.max_content_rating else []
        if caller is not None and caller.role == "child":
            try:
                ratings.append(child_rating(caller, cfg.content_ratings))
            except BadClaim as exc:
                return Deny(403, "invalid_claims", f"The access token's parental controls are unreadable: {exc}.")
        if not ratings:
            return Allow()
        effective = min(ratings, key=self._rank)
        if caller is not None and caller.claims.get("content_rating") == effective:
            return Allow()
        return Allow(upstream_headers={cfg.content_rating_header: effective})


def child_rating(caller: Caller, scale: tuple[str, ...]) -> str:
    """The strictest of the child's `content_rating` and its parent's `max_content_rating`; raises BadClaim."""
    rating, cap = caller.claims.get("content_rating"), caller.claims.get("max_content_rating")
    if rating not in scale:
        raise BadClaim("content_rating is not a known rating")
    if cap is None:
        return rating
    if cap not in scale:
        raise BadClaim("max_content_rating is not a known rating")
    return min(rating, cap, key=scale.index)


def _children(caller: Caller) -> frozenset[str]:
    children = caller.claims.get("children")
    if not isinstance(children, list | tuple) or len(children) > MAX_CHILDREN:
        return frozenset()
    return frozenset(c for c in children if _text(c))


def _owns(caller: Caller, owned: Owned, value: Any) -> bool:
    if not _text(value):
        return False
    if owned.kind == "family":
        return value == caller.family_id
    if value == caller.sub:  # naming oneself: any account; as a child id only when the caller is that child
        return owned.kind == "account" or caller.role == "child"
    return caller.role == "parent" and value in _children(caller)  # a child may only name itself


def _unauthenticated(cfg: Config, code: str, detail: str) -> Deny:
    return Deny(401, code, detail, {"WWW-Authenticate": f'Bearer realm="{cfg.realm}"'})


def _misconfigured(why: str) -> Deny:
    return Deny(500, "rbac_misconfigured", f"The route's authorization is misconfigured: {why}.")
