"""Cluster-wide gauges for the seed's Rate Limiting metrics (throttled requests, quota utilisation, abuse detections),
computed from Redis, so every pod reports the same fleet figure (aggregate with max(), not sum()).

- Quota: each usage sync pass (the elected pod, sync.py) folds every family pool's current day into a summary it
  stores in Redis (SUMMARY_KEY): pools counted, stories used, pools at their limit (their members are throttled on
  story creation until local midnight), and the fill ratio's mean, 90th percentile and maximum. Limits are the
  family's plan (storyverse_plans) plus today's grants and occasion stories.
- Abuse: the live blocks, by kind and reason, read from sv-quota's block index at scrape time.
- Per-request counts stay with the plugin servers that make the decisions: `sv_quota_throttled_total` and
  `sv_quota_abuse_blocks_total` on each gateway pod (sum() them across pods).
"""

from __future__ import annotations

import logging
import time
from collections import Counter as Tally
from dataclasses import dataclass, field

import redis
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from storyverse_contracts.keys import BLOCKS_INDEX, CounterKey
from storyverse_plans import plan_for

from . import blocks, counters

log = logging.getLogger(__name__)

SUMMARY_KEY = "sv:ratelimit:v1:gauges"


@dataclass
class QuotaSummary:
    """Accumulates family pools over one sync pass (newest day per family only)."""

    newest: dict[str, tuple[str, float, int, bool]] = field(default_factory=dict)  # family -> (day, ratio, used, full)

    def add(self, c: CounterKey, value: counters.Counter, tier: str | None) -> None:
        if c.scope != "family" or not c.family_id:
            return
        day = c.day.isoformat()
        if c.family_id in self.newest and self.newest[c.family_id][0] >= day:
            return
        limit = plan_for(tier).daily + value.grant
        ratio = value.used / limit if limit > 0 else 1.0
        self.newest[c.family_id] = (day, ratio, value.used, value.used >= limit)

    def as_mapping(self, now_s: float) -> dict[str, str]:
        ratios = sorted(r for _, r, _, _ in self.newest.values())
        n = len(ratios)
        return {
            "pools": str(n),
            "stories_used": str(sum(u for _, _, u, _ in self.newest.values())),
            "exhausted": str(sum(1 for *_, full in self.newest.values() if full)),
            "mean": repr(sum(ratios) / n if n else 0.0),
            "p90": repr(ratios[min(n - 1, int(0.9 * n))] if n else 0.0),
            "max": repr(ratios[-1] if n else 0.0),
            "computed_at": repr(now_s),
        }


def store(client: redis.Redis, summary: QuotaSummary) -> None:
    client.hset(SUMMARY_KEY, mapping=summary.as_mapping(time.time()))


class RateLimitCollector(Collector):
    """Reads Redis on each scrape (two commands and the live blocks); a Redis fault yields no samples and
    sv_ratelimit_redis_up 0, never an error page."""

    def __init__(self, client_factory) -> None:
        self._client = client_factory

    def collect(self):
        up = GaugeMetricFamily("sv_ratelimit_redis_up", "1 when the limits' Redis answered this scrape.")
        try:
            client = self._client()
            summary = client.hgetall(SUMMARY_KEY) or {}
            live = blocks.list_blocks(client)
            indexed = client.zcard(BLOCKS_INDEX)
        except redis.RedisError:
            log.warning("gauges: redis unavailable")
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        throttled = GaugeMetricFamily(
            "sv_ratelimit_throttled_subjects",
            "Subjects throttled now: family pools at their daily limit (quota_exhausted), blocked IPs and accounts "
            "(abuse_block).",
            labels=["reason"],
        )
        throttled.add_metric(["quota_exhausted"], _num(summary, "exhausted"))
        throttled.add_metric(["abuse_block"], len(live))
        yield throttled
        yield from _quota_families(summary)
        yield from _abuse_families(live, indexed)


def _num(summary: dict[str, str], name: str) -> float:
    try:
        return float(summary.get(name) or 0)
    except ValueError:
        return 0.0


def _quota_families(summary: dict[str, str]):
    def num(name: str) -> float:
        return _num(summary, name)

    ratio = GaugeMetricFamily(
        "sv_ratelimit_quota_utilisation_ratio",
        "Fill ratio (stories used / limit) of the families' daily pools on their current day.",
        labels=["stat"],
    )
    for stat in ("mean", "p90", "max"):
        ratio.add_metric([stat], num(stat))
    pools = GaugeMetricFamily("sv_ratelimit_quota_pools", "Family pools with a counter on their current day.")
    pools.add_metric([], num("pools"))
    used = GaugeMetricFamily("sv_ratelimit_quota_stories_used", "Stories used in those pools on their current day.")
    used.add_metric([], num("stories_used"))
    age = GaugeMetricFamily(
        "sv_ratelimit_quota_summary_timestamp_seconds", "When the last usage sync computed the quota figures."
    )
    age.add_metric([], num("computed_at"))
    return [ratio, pools, used, age]


def _abuse_families(live: list[dict], indexed: int):
    active = GaugeMetricFamily(
        "sv_ratelimit_abuse_blocks_active",
        "Abuse detections in force: live sv-quota blocks by subject kind and reason.",
        labels=["kind", "reason"],
    )
    for (kind, reason), n in sorted(Tally((b["kind"], b["reason"]) for b in live).items()):
        active.add_metric([kind, reason], n)
    index = GaugeMetricFamily("sv_ratelimit_abuse_index_entries", "Entries in sv-quota's block index.")
    index.add_metric([], indexed)
    return [active, index]
