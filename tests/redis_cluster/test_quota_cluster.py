"""sv-quota on a real Redis Cluster: the same limit tests through RedisCluster, and a master killed (kill -9) with
its replica promoted: state survives, scripts are reloaded on NOSCRIPT, service resumes."""

from __future__ import annotations

import threading
import time

import pytest
import redis
from storyverse_plugins.common.decision import Allow, Deny
from storyverse_plugins.common.redis_pool import RedisSettings, build_client
from storyverse_plugins.quota.limiter import Limiter, Options
from storyverse_plugins.quota.policy import build_batch
from storyverse_plugins.quota.schema import parse_config
from storyverse_plugins.quota.storage import RedisStorage

CFG = parse_config({"policies": [{"name": "per-min", "limit": 50, "period": "minute"}], "quota": {"enabled": True}})


def who(n: str) -> dict:
    return {"sub": "u-" + n, "family_id": "fam-" + n, "tier": "basic", "tz": "America/New_York"}


@pytest.fixture
def limiter(cluster):
    client = build_client(RedisSettings(cluster_nodes=cluster.nodes, timeout_ms=50))
    yield Limiter(RedisStorage(lambda: client, breaker_ms=0), Options(jitter_max_s=0, use_cache=False))
    client.close()


def decide(limiter, identity, now=None):
    return limiter.check(build_batch(CFG, identity, None, "POST", now or time.time()))


def test_limits_on_cluster_subjects_spread_over_masters(cluster, limiter):
    masters = set()
    for n in ("a", "b", "c", "d", "e", "f"):
        out = decide(limiter, who(n))
        assert isinstance(out.decision, Allow) and out.error is None
        masters.add(cluster.master_of(out.reservation.keys[0]))
        limiter.settle(out.reservation, True, int(time.time() * 1000))
    assert len(masters) >= 2  # the subjects really live on different shards


def test_reserve_commit_release_and_rate_on_cluster(limiter):
    identity = who("rcr")
    outs = [decide(limiter, identity) for _ in range(5)]
    assert all(isinstance(o.decision, Allow) for o in outs)
    assert decide(limiter, identity).decision.code == "quota_exceeded"
    limiter.settle(outs[0].reservation, False, int(time.time() * 1000))
    again = decide(limiter, identity)
    assert isinstance(again.decision, Allow) and again.decision.response_headers["X-Quota-Remaining"] == "0"


def test_200_concurrent_on_cluster_exactly_five(limiter):
    identity, results, barrier = who("busy"), [], threading.Barrier(200)

    def worker():
        barrier.wait()
        results.append(decide(limiter, identity))

    threads = [threading.Thread(target=worker) for _ in range(200)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [o.error for o in results if o.error] == []
    assert sum(isinstance(o.decision, Allow) for o in results) == 5
    assert {o.decision.code for o in results if isinstance(o.decision, Deny)} == {"quota_exceeded"}


def test_master_killed_replica_promoted_state_kept_noscript_handled(cluster, limiter):
    identity = who("failover")
    for _ in range(3):
        out = decide(limiter, identity)
        limiter.settle(out.reservation, True, int(time.time() * 1000))
    key = out.reservation.keys[0]
    master = cluster.master_of(key)
    assert redis.Redis(port=master).execute_command("WAIT", 1, 2000) == 1  # the replica has the 3 commits
    cluster.kill(master)
    deadline, outcome = time.monotonic() + 20, None
    while time.monotonic() < deadline:
        outcome = decide(limiter, identity)
        if outcome.error is None:
            break
        time.sleep(0.2)
    assert outcome is not None and outcome.error is None, outcome
    new_master = cluster.master_after_failover(key, master)
    assert new_master != master
    assert outcome.decision.response_headers["X-Quota-Remaining"] == "1"  # 3 committed + this reservation of 5
    sha = limiter.storage._scripts["decide"].sha
    assert redis.Redis(port=new_master).script_exists(sha) == [True]  # NOSCRIPT on the promoted replica: reloaded
    assert decide(limiter, identity).decision.response_headers["X-Quota-Remaining"] == "0"
