"""Round-robin wheel and passive health checks (Kong's round_robin.lua + lua-resty-healthcheck)."""

from __future__ import annotations

import copy

from kong_emulator.config.entities import Target, Upstream
from kong_emulator.runloop.balancer import NO_PEER_MESSAGE, Balancer, UpstreamBalancer, build_wheel

PASSIVE = {
    "passive": {
        "healthy": {"http_statuses": [200, 201], "successes": 2},
        "unhealthy": {"http_statuses": [500, 503], "http_failures": 2, "tcp_failures": 1, "timeouts": 3},
    },
    "threshold": 0,
}


def upstream(*targets: tuple[str, int], healthchecks=None) -> Upstream:
    return Upstream(
        id="u",
        name="story-api",
        targets=[Target(id=f"t{i}", target=t, weight=w) for i, (t, w) in enumerate(targets)],
        healthchecks=copy.deepcopy(healthchecks if healthchecks is not None else PASSIVE),
    )


def no_shuffle(wheel):
    return None


def picks(balancer: UpstreamBalancer, n: int) -> list[str | None]:
    return [(t.target if t else None) for t in (balancer.get_peer() for _ in range(n))]


def test_wheel_holds_each_target_weight_over_gcd_times_and_skips_weight_zero():
    targets = [Target("a", "a:1", 100), Target("b", "b:1", 50), Target("c", "c:1", 0)]
    assert [t.id for t in build_wheel(targets)] == ["a", "a", "b"]


def test_round_robin_walks_the_wheel_in_proportion():
    b = UpstreamBalancer(upstream(("a:1", 200), ("b:1", 100)), shuffle=no_shuffle)
    assert picks(b, 6) == ["a:1", "a:1", "b:1"] * 2


def test_wheel_is_shuffled_once_like_kong():
    seen = []
    UpstreamBalancer(upstream(("a:1", 1), ("b:1", 1)), shuffle=seen.append)
    assert len(seen) == 1 and len(seen[0]) == 2


def test_http_failures_past_threshold_take_a_target_out():
    b = UpstreamBalancer(upstream(("a:1", 100), ("b:1", 100)), shuffle=no_shuffle)
    a = b.targets[0]
    b.report(a, 500)
    assert b.is_healthy(a)
    b.report(a, 503)
    assert not b.is_healthy(a)
    assert picks(b, 3) == ["b:1"] * 3


def test_a_success_resets_the_failure_counter():
    b = UpstreamBalancer(upstream(("a:1", 100)), shuffle=no_shuffle)
    a = b.targets[0]
    b.report(a, 500)
    b.report(a, 200)
    b.report(a, 500)
    assert b.is_healthy(a)


def test_tcp_failures_and_timeouts_count_separately():
    b = UpstreamBalancer(upstream(("a:1", 100), ("b:1", 100)), shuffle=no_shuffle)
    a, other = b.targets
    b.report(other, "timeout")
    b.report(other, "timeout")
    assert b.is_healthy(other)
    b.report(a, "tcp")
    assert not b.is_healthy(a)


def test_healthy_statuses_bring_a_target_back():
    b = UpstreamBalancer(upstream(("a:1", 100)), shuffle=no_shuffle)
    a = b.targets[0]
    b.set_health(a, False)
    b.report(a, 200)
    assert not b.is_healthy(a)
    b.report(a, 201)
    assert b.is_healthy(a)


def test_all_unhealthy_means_no_peer():
    b = Balancer({"story-api": upstream(("a:1", 100))}, shuffle=no_shuffle)
    target = b.pick("story-api")
    b.report("story-api", target, "tcp")
    assert b.pick("story-api") is None
    assert NO_PEER_MESSAGE == "failure to get a peer from the ring-balancer"


def test_kong_default_thresholds_of_zero_disable_passive_checks():
    defaults = {"passive": {"unhealthy": {"http_statuses": [500], "http_failures": 0, "tcp_failures": 0}}}
    b = UpstreamBalancer(upstream(("a:1", 100), healthchecks=defaults), shuffle=no_shuffle)
    for _ in range(10):
        b.report(b.targets[0], 500)
        b.report(b.targets[0], "tcp")
    assert b.get_peer() is not None


def test_threshold_makes_the_whole_upstream_unhealthy():
    checks = {**PASSIVE, "threshold": 60}
    b = UpstreamBalancer(upstream(("a:1", 100), ("b:1", 100), healthchecks=checks), shuffle=no_shuffle)
    b.set_health(b.targets[0], False)
    assert b.get_peer() is None


def test_no_targets_and_unknown_upstream_have_no_peer():
    assert Balancer({"u": upstream()}).pick("u") is None
    assert Balancer({}).pick("nope") is None
    assert UpstreamBalancer(upstream(("a:1", 0))).get_peer() is None


def test_target_host_and_port():
    assert (Target("t", "10.0.0.1:8080").host, Target("t", "10.0.0.1:8080").port) == ("10.0.0.1", 8080)
    assert (Target("t", "[::1]:8000").host, Target("t", "[::1]:8000").port) == ("::1", 8000)
