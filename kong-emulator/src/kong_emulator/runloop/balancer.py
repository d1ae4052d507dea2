"""Upstream target selection and passive health checks, as Kong 3.x does them.

Round robin is Kong's `kong/runloop/balancer/round_robin.lua`: a wheel holding each target `weight / gcd(weights)`
times, shuffled once when built (`utils.shuffle`), walked by a pointer that skips unavailable targets; weight-0 targets
are not on the wheel. Passive checks follow lua-resty-healthcheck as configured by `upstream.healthchecks.passive`
(Kong's defaults set every threshold to 0, i.e. off): consecutive TCP failures, timeouts or "unhealthy" HTTP statuses
past their threshold mark a target unhealthy; "healthy" statuses past `successes` mark it healthy again; an event of
the other kind resets a counter. No peer (all unhealthy, or below `healthchecks.threshold` percent) is Kong's 503.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kong_emulator.config.entities import Target, Upstream

NO_PEER_MESSAGE = "failure to get a peer from the ring-balancer"  # Kong's 503 body message
FAILURE_KINDS = ("tcp_failures", "timeouts", "http_failures")


@dataclass
class TargetHealth:
    """lua-resty-healthcheck's per-target state: `internal_health` (healthy, mostly_healthy, mostly_unhealthy,
    unhealthy -- the "mostly" states still count as the side they lean from) and the consecutive-event counters,
    shared by active and passive checks."""

    internal: str = "healthy"
    counters: dict[str, int] = field(default_factory=lambda: dict.fromkeys(("successes", *FAILURE_KINDS), 0))

    @property
    def healthy(self) -> bool:
        return self.internal in ("healthy", "mostly_healthy")


class UpstreamBalancer:
    """One upstream's round-robin wheel and its targets' health (passive reports and active probes)."""

    def __init__(self, upstream: Upstream, shuffle: Callable[[list[Any]], None] = random.shuffle):
        self.upstream = upstream
        checks = upstream.healthchecks or {}
        self.checks = {"passive": checks.get("passive") or {}, "active": checks.get("active") or {}}
        self.passive = self.checks["passive"]
        self.threshold = checks.get("threshold") or 0
        self.targets = [t for t in upstream.targets if t.weight > 0]
        self.health = {t.id: TargetHealth() for t in upstream.targets}
        self.wheel = build_wheel(self.targets)
        shuffle(self.wheel)
        self.pointer = 0

    def get_peer(self) -> Target | None:
        """Kong's `getPeer`: advance the pointer to the next available target, None if a full turn finds none."""
        if not self.wheel or not self._balancer_healthy():
            return None
        for _ in range(len(self.wheel)):
            self.pointer = self.pointer % len(self.wheel) + 1
            target = self.wheel[self.pointer - 1]
            if self.health[target.id].healthy:
                return target
        return None

    def _balancer_healthy(self) -> bool:
        if not self.threshold:
            return True
        total = sum(t.weight for t in self.targets)
        healthy = sum(t.weight for t in self.targets if self.health[t.id].healthy)
        return total > 0 and healthy * 100 / total >= self.threshold

    def report(self, target: Target, outcome: str | int | None, check: str = "passive") -> None:
        """A check's input: `"tcp"` (connection failure), `"timeout"`, or an HTTP status (None: no valid status
        line, counted as an unhealthy status -- report_http_status's 0)."""
        conf = self.checks[check]
        unhealthy = conf.get("unhealthy") or {}
        healthy = conf.get("healthy") or {}
        if outcome == "tcp":
            self._incr(target, "unhealthy", unhealthy.get("tcp_failures", 0), "tcp_failures")
        elif outcome == "timeout":
            self._incr(target, "unhealthy", unhealthy.get("timeouts", 0), "timeouts")
        elif outcome == "success":  # an active tcp check that connected
            self._incr(target, "healthy", healthy.get("successes", 0), "successes")
        elif outcome in (healthy.get("http_statuses") or ()):
            self._incr(target, "healthy", healthy.get("successes", 0), "successes")
        elif outcome is None or outcome in (unhealthy.get("http_statuses") or ()):
            self._incr(target, "unhealthy", unhealthy.get("http_failures", 0), "http_failures")

    def _incr(self, target: Target, report: str, limit: int, kind: str) -> None:
        """lua-resty-healthcheck incr_counter: a 0 limit is off; a success clears the failure counters and a
        failure the success counter; the limit reached flips the state, the first event of the other kind only
        leans it ("mostly_")."""
        state = self.health[target.id]
        if not limit or report == state.internal:
            return
        for name in state.counters:
            if (name == "successes") != (kind == "successes"):
                state.counters[name] = 0
        state.counters[kind] += 1
        new = None
        if state.counters[kind] >= limit:
            new = report
        elif state.internal == "healthy" and kind != "successes":
            new = "mostly_healthy"
        elif state.internal == "unhealthy" and kind == "successes":
            new = "mostly_unhealthy"
        if new:
            state.internal = new

    def set_health(self, target: Target, healthy: bool) -> None:
        """Flip a target's status (as the Admin API's /healthy, /unhealthy do): counters cleared."""
        self.health[target.id] = TargetHealth(internal="healthy" if healthy else "unhealthy")

    def is_healthy(self, target: Target) -> bool:
        return self.health[target.id].healthy


def build_wheel(targets: list[Target]) -> list[Target]:
    """Each target `weight / gcd` times, in declaration order (the caller shuffles, as Kong does)."""
    divisor = 0
    for t in targets:
        divisor = math.gcd(divisor, t.weight)
    if divisor == 0:
        return []
    return [t for t in targets for _ in range(t.weight // divisor)]


class Balancer:
    """All upstreams' balancers, by upstream name (a service's `host` may name an upstream)."""

    def __init__(self, upstreams: Mapping[str, Upstream], shuffle: Callable[[list[Any]], None] = random.shuffle):
        self.upstreams = {name: UpstreamBalancer(u, shuffle) for name, u in upstreams.items()}

    def pick(self, upstream_name: str) -> Target | None:
        """The next target of the named upstream; None → answer 503 `NO_PEER_MESSAGE`."""
        balancer = self.upstreams.get(upstream_name)
        return balancer.get_peer() if balancer else None

    def report(self, upstream_name: str, target: Target, outcome: str | int) -> None:
        """Feed a request's outcome (`"tcp"`, `"timeout"` or an HTTP status) to the passive health checker."""
        balancer = self.upstreams.get(upstream_name)
        if balancer is not None:
            balancer.report(target, outcome)
