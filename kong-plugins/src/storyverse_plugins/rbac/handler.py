"""sv-rbac phase handler: reads only the request facts the policy needs, applies its decision.

PDK round trips in access (each one is a plugin-server round trip):
  always            ctx.shared.get(identity)                                                    1
  + method          request.get_method(), only when this caller's outcome differs between the route's methods
                    (a route-scoped instance learns its route's `methods` once, with router.get_route(), and
                    needs no get_method at all when the route has one method or the same answer for each)
  + captures        request.get_uri_captures(), only with owned_captures (or kind_capture, for children)
  + header          service.request.set_headers(), only when the effective content rating differs from the one
                    sv-jwt forwarded
  + mark            ctx.shared.set(SHARED_RBAC, True) when the request passes (sv-edge's guard)             1
  deny              + ctx.shared.get(request id) + response.exit; nothing after exit.
  no identity on a route that needs one: sv-jwt's plugin server failed (a protected route's sv-jwt answers 401
  itself), so no decision and no mark: sv-edge answers 503, never a 401 that signs a valid user out.
Any exception is caught and answered with a 500 problem (fail closed): authorization never fails open.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

from storyverse_plugins import PRIORITIES, __version__
from storyverse_plugins.common.decision import Deny
from storyverse_plugins.common.identity import SHARED_IDENTITY, SHARED_RBAC, SHARED_REQUEST_ID
from storyverse_plugins.rbac.policy import Caller, Facts, Policy, read_caller
from storyverse_plugins.rbac.schema import METHODS, Schema, parse_config

version = __version__
priority = PRIORITIES["sv-rbac"]

__all__ = ["Plugin", "Schema", "priority", "version"]

log = logging.getLogger("storyverse_plugins.rbac")

_UNKNOWN: Any = object()  # the route's methods have not been read yet


class _Guard:
    exited = False


class Plugin:
    def __init__(self, config: dict, clock: Callable[[], float] = time.time) -> None:
        self.cfg = parse_config(config)  # a bad config raises: StartInstance fails and Kong answers 500
        self.policy = Policy.compile(self.cfg)
        self.clock = clock
        # A route-scoped instance serves one route, whose `methods` are fixed for the instance's life.
        self.route_methods: frozenset[str] | None = _UNKNOWN if self.cfg.route_id else None

    def access(self, kong) -> None:
        guard = _Guard()
        try:
            self._access(kong, guard)
        except Exception:
            # An uncaught exception stalls Kong 60 s and then lets the request through: answer 500 ourselves.
            log.exception("sv-rbac: unexpected error, answering 500")
            if not guard.exited:
                _exit(kong, guard, Deny(500, "internal_error", "The request could not be authorized."))

    def _access(self, kong, guard: _Guard) -> None:
        identity = kong.ctx.shared.get(SHARED_IDENTITY)
        if identity is None and not self.cfg.public:
            log.error("sv-rbac: no identity from sv-jwt on a protected route (its plugin server failed?): no mark")
            return None
        facts = self._facts(kong, read_caller(identity))
        decision = self.policy.decide(identity, facts, self.clock())
        if isinstance(decision, Deny):
            request_id = kong.ctx.shared.get(SHARED_REQUEST_ID)
            return _exit(kong, guard, decision, request_id)
        if decision.upstream_headers:
            kong.service.request.set_headers(decision.upstream_headers)
        kong.ctx.shared.set(SHARED_RBAC, True)  # the decision mark, last
        return None

    def _facts(self, kong, caller: Caller | None) -> Facts:
        methods = None if self.route_methods is _UNKNOWN else self.route_methods
        needs = self.policy.needs(caller, methods)
        if needs.method and self.route_methods is _UNKNOWN:
            methods = self.route_methods = route_methods(kong.router.get_route(), self.cfg.route_id)
            needs = self.policy.needs(caller, methods)
        method = next(iter(methods)) if methods and len(methods) == 1 else None
        if needs.method and method is None:
            method = kong.request.get_method()
        captures = named_captures(kong.request.get_uri_captures()) if needs.captures else None
        return Facts(method, methods, captures)


def route_methods(route: Any, route_id: str | None) -> frozenset[str] | None:
    """The `methods` of this instance's route entity (None: any method, or not the route we were configured for)."""
    if not isinstance(route, dict) or route.get("id") != route_id:
        return None
    methods = route.get("methods")
    if not isinstance(methods, list) or not methods or not all(isinstance(m, str) for m in methods):
        return None
    upper = frozenset(m.upper() for m in methods)
    return upper if upper <= frozenset(METHODS) else None


def named_captures(captures: Any) -> dict[str, Any]:
    """The named part of get_uri_captures() ({} for a prefix route: msgpack sends an empty table as [])."""
    named = captures.get("named") if isinstance(captures, dict) else None
    return named if isinstance(named, dict) else {}


def _exit(kong, guard: _Guard, deny: Deny, request_id: Any = None) -> None:
    guard.exited = True
    rid = request_id if isinstance(request_id, str) else None
    body = json.dumps(deny.body(request_id=rid), separators=(",", ":"))
    kong.response.exit(deny.status, body, deny.response_headers())
