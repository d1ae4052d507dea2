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
    """lua-resty-healthcheck's per-target state: healthy flag and the consecutive-event counters."""

    healthy: bool = True
    counters: dict[str, int] = field(default_factory=lambda: dict.fromkeys(("successes", *FAILURE_KINDS), 0))


class UpstreamBalancer:
    """One upstream's round-robin wheel and its targets' passive health."""

    def __init__(self, upstream: Upstream, shuffle: Callable[[list[Any]], None] = random.shuffle):
        self.upstream = upstream
        self.passive = (upstream.healthchecks or {}).get("passive") or {}
        self.threshold = (upstream.healthchecks or {}).get("threshold") or 0
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

    def report(self, target: Target, outcome: str | int) -> None:
        """Passive check input: `"tcp"` (connection failure), `"timeout"`, or the upstream's HTTP status."""
        unhealthy = self.passive.get("unhealthy") or {}
        healthy = self.passive.get("healthy") or {}
        if outcome == "tcp":
            self._failure(target, "tcp_failures", unhealthy.get("tcp_failures", 0))
        elif outcome == "timeout":
            self._failure(target, "timeouts", unhealthy.get("timeouts", 0))
        elif isinstance(outcome, int) and outcome in (unhealthy.get("http_statuses") or ()):
            self._failure(target, "http_failures", unhealthy.get("http_failures", 0))
        elif isinstance(outcome, int) and outcome in (healthy.get("http_statuses") or ()):
            self._success(target, healthy.get("successes", 0))

    def _failure(self, target: Target, kind: str, limit: int) -> None:
        state = self.health[target.id]
        state.counters["successes"] = 0
        if not limit:
            return
        state.counters[kind] += 1
        if state.healthy and state.counters[kind] >= limit:
            self.set_health(target, False)

    def _success(self, target: Target, limit: int) -> None:
        state = self.health[target.id]
        for kind in FAILURE_KINDS:
            state.counters[kind] = 0
        if not limit:
            return
        state.counters["successes"] += 1
        if not state.healthy and state.counters["successes"] >= limit:
            self.set_health(target, True)

    def set_health(self, target: Target, healthy: bool) -> None:
        """Flip a target's status (as a health-check threshold or the Admin API's /healthy, /unhealthy do)."""
        self.health[target.id] = TargetHealth(healthy=healthy)

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
