"""The capacity model behind docs/capacity.md and the chart's HPA settings: `python -m bench.capacity` prints it.

Measured per-request costs in, pods and Redis throughput for the seed's scaling scenarios out. Pure arithmetic over
named inputs, so a new measurement (docs/benchmarks-*.md) or a new assumption changes one number here, and
tests/deploy/test_capacity_model.py holds the chart's HPA values to what the model derives.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# -- measured (the documents that hold the command and the run) ------------------------------------------------------
PLUGIN_CPU_US_READ = 740  # sv-jwt + sv-rbac + sv-quota on the default (fast) plugin server: docs/benchmarks-chain.md
ROUND_TRIP_CPU_US = 92  # one PDK round trip on that server: docs/benchmarks-chain.md
QUOTA_LOG_ROUND_TRIPS = 4  # sv-quota-log on a charged route: log event + 2 calls (+1 access ctx.shared.set)
KONG_CPU_US = 160  # Kong's own Lua pipeline per request per vCPU (docs/architecture.md §9: Kong's published figure)
LOGIN_CPU_MS = 21.7 + 4.0  # argon2id verify + the rest of /login: docs/benchmarks-auth.md
REFRESH_CPU_MS = 2 * 1000 / 440  # 2 cores saturated at 440 /refresh per second: docs/benchmarks-auth.md
DECIDE_PER_REDIS_CORE = 15_000  # decide.lua story decisions/s on one Redis core: docs/benchmarks-quota.md

# -- the seed's pod size (API Gateway and Authentication: requests 0.5 CPU, limits 1 CPU) ---------------------------
POD_CPU_REQUEST = 0.5
POD_CPU_LIMIT = 1.0
ZONES = 3

# -- assumptions (stated, not measured; docs/capacity.md explains each) ----------------------------------------------
FAMILIES_EVENING = 50_000  # families making their stories in the evening hour
STORIES_PER_FAMILY = 5  # a basic family's whole daily quota
READS_PER_STORY = 20  # list, item, characters, universes around one story
GENERATIONS_PER_STORY = 3  # text, image, audio: charged routes like the creation itself
PEAK_FACTOR = 2.0  # bedtime concentrates the hour's traffic into its busiest half
VIRAL_READ_FACTOR = 10  # viral sharing: story reads ×10 on top of the evening peak
REFRESH_EVERY_S = 600  # one token refresh per active family per access-token lifetime
REGISTRATION_SPIKE_PER_S = 50  # a campaign: registrations (argon2 hash, ≈ a login's CPU) per second
HPA_REACTION_S = 60  # metrics window + pod start: load the pods carry before new ones serve
SPIKE_GROWTH_PER_MIN = 1.5  # a spike that grows 50 % within the reaction time must not saturate the pods


@dataclass(frozen=True)
class Scenario:
    name: str
    reads_per_s: float
    charged_per_s: float  # story creations and generations (sv-quota-log runs, settle.lua)
    refresh_per_s: float
    logins_per_s: float

    @property
    def gateway_per_s(self) -> float:
        return self.reads_per_s + self.charged_per_s + self.refresh_per_s + self.logins_per_s


def gateway_cpu_us(charged: bool) -> float:
    """CPU one request costs a gateway pod: Kong's pipeline + our plugin servers (+ the log phase when charged)."""
    return KONG_CPU_US + PLUGIN_CPU_US_READ + (QUOTA_LOG_ROUND_TRIPS * ROUND_TRIP_CPU_US if charged else 0)


def target_cpu_percent() -> int:
    """The HPA target (% of the CPU request): a pod at target absorbs SPIKE_GROWTH_PER_MIN within the CPU it is
    guaranteed (its request; above it, up to the limit, only if the node has spare CPU), rounded down to 5 %."""
    return math.floor(100 / SPIKE_GROWTH_PER_MIN / 5) * 5


def pod_rps(target_percent: int) -> float:
    """Requests per second one gateway pod serves at the HPA target (mixed reads and charged requests)."""
    cpu = POD_CPU_REQUEST * target_percent / 100
    return cpu / (gateway_cpu_us(False) / 1e6)


def scenarios() -> list[Scenario]:
    stories_per_s = FAMILIES_EVENING * STORIES_PER_FAMILY / 3600 * PEAK_FACTOR
    refresh = FAMILIES_EVENING / REFRESH_EVERY_S
    evening = Scenario(
        "evening bedtime peak", stories_per_s * READS_PER_STORY, stories_per_s * (1 + GENERATIONS_PER_STORY), refresh, 0
    )
    viral = Scenario(
        "viral sharing (story reads ×10 on the evening peak)",
        evening.reads_per_s * VIRAL_READ_FACTOR,
        evening.charged_per_s,
        refresh,
        0,
    )
    registration = Scenario("registration spike", 0, 0, 0, REGISTRATION_SPIKE_PER_S)
    return [evening, viral, registration]


def gateway_pods(s: Scenario, target_percent: int) -> int:
    cpu_s = (s.reads_per_s + s.refresh_per_s + s.logins_per_s) * gateway_cpu_us(False) + s.charged_per_s * (
        gateway_cpu_us(True)
    )
    per_pod = POD_CPU_REQUEST * target_percent / 100 * 1e6
    return max(ZONES, math.ceil(cpu_s / per_pod))


def auth_pods(s: Scenario, target_percent: int) -> int:
    cpu = s.logins_per_s * LOGIN_CPU_MS / 1000 + s.refresh_per_s * REFRESH_CPU_MS / 1000
    return max(ZONES, math.ceil(cpu / (POD_CPU_REQUEST * target_percent / 100)))


def redis_ops(s: Scenario) -> float:
    """EVALSHA per second: one decision per request, one settle per charged request (revocations: held in process)."""
    return s.gateway_per_s + s.charged_per_s


def model() -> dict:
    target = target_cpu_percent()
    rows = []
    for s in scenarios():
        rows.append(
            {
                "scenario": s.name,
                "gateway req/s": s.gateway_per_s,
                "gateway pods": gateway_pods(s, target),
                "auth pods": auth_pods(s, target),
                "redis EVALSHA/s": redis_ops(s),
                "redis cores": redis_ops(s) / DECIDE_PER_REDIS_CORE,
            }
        )
    return {
        "target_cpu": target,
        "pod_rps": pod_rps(target),
        "pod_rps_at_limit": POD_CPU_LIMIT / (gateway_cpu_us(False) / 1e6),
        "rows": rows,
        "gateway_max": max(r["gateway pods"] for r in rows),
        "auth_max": max(r["auth pods"] for r in rows),
    }


if __name__ == "__main__":
    m = model()
    print(f"HPA target CPU {m['target_cpu']} %; one gateway pod: {m['pod_rps']:,.0f} req/s at target, "
          f"{m['pod_rps_at_limit']:,.0f} at its 1-CPU limit")  # fmt: skip
    for r in m["rows"]:
        print(
            f"{r['scenario']}: {r['gateway req/s']:,.0f} req/s -> {r['gateway pods']} gateway pods, "
            f"{r['auth pods']} auth pods, {r['redis EVALSHA/s']:,.0f} EVALSHA/s ({r['redis cores']:.2f} Redis cores)"
        )
