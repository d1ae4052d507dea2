"""Redis stopped mid-run: each fault_tolerant setting behaves as declared, and service resumes when Redis returns.

Starts its own redis-server on a free port (never touches the shared one) and always cleans it up.
"""

from __future__ import annotations

import socket
import subprocess
import time

import pytest
import redis
from storyverse_plugins.common.decision import Allow, Deny
from storyverse_plugins.common.redis_pool import RedisSettings, build_client
from storyverse_plugins.quota.limiter import Limiter, Options
from storyverse_plugins.quota.policy import build_batch
from storyverse_plugins.quota.schema import parse_config
from storyverse_plugins.quota.storage import RedisStorage

ID = {"sub": "u1", "family_id": "f1", "tier": "basic", "tz": "Europe/Paris"}
BREAKER_MS = 200


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisProcess:
    def __init__(self, tmp_path, port: int) -> None:
        self.tmp_path, self.port, self.proc = tmp_path, port, None

    def start(self) -> None:
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self.proc = subprocess.Popen([*args, "--dir", str(self.tmp_path)], stdout=subprocess.DEVNULL)
        probe = redis.Redis(port=self.port, socket_timeout=0.2)
        for _ in range(100):
            try:
                probe.ping()
                return
            except redis.ConnectionError:
                time.sleep(0.02)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=5)


@pytest.fixture
def own_redis(tmp_path):
    server = RedisProcess(tmp_path, free_port())
    server.start()
    yield server
    server.stop()


def limiter_for(port: int) -> Limiter:
    client = build_client(RedisSettings(port=port, timeout_ms=50))
    return Limiter(RedisStorage(lambda: client, breaker_ms=BREAKER_MS), Options(jitter_max_s=0, use_cache=False))


CONFIGS = {
    "rate_open": parse_config({"policies": [{"name": "m", "limit": 100, "period": "minute"}]}),
    "rate_closed": parse_config(
        {"policies": [{"name": "m", "limit": 100, "period": "minute", "fault_tolerant": False}]}
    ),
    "quota_closed": parse_config({"quota": {"enabled": True}}),
    "quota_open": parse_config({"quota": {"enabled": True, "fault_tolerant": True}}),
    "quota_shadow": parse_config({"quota": {"enabled": True, "shadow": True}}),
}
EXPECT_DOWN = {"rate_open": True, "rate_closed": False, "quota_closed": False, "quota_open": True, "quota_shadow": True}


def check(limiter, name):
    return limiter.check(build_batch(CONFIGS[name], ID, None, "POST", time.time()))


def test_redis_stopped_mid_run_then_back(own_redis):
    limiter = limiter_for(own_redis.port)
    for name in CONFIGS:
        out = check(limiter, name)
        assert isinstance(out.decision, Allow) and out.error is None, name
    own_redis.stop()
    for name, passes in EXPECT_DOWN.items():
        started = time.monotonic()
        out = check(limiter, name)
        assert out.error, name
        assert out.reservation is None  # nothing was held, so nothing will be charged
        assert (isinstance(out.decision, Allow)) is passes, name
        if not passes:
            assert out.decision.status == 503 and out.decision.code == "rate_limit_unavailable"
        assert time.monotonic() - started < 0.5  # bounded by the 50 ms timeout / open breaker, never seconds
    assert limiter.metrics.value("redis_errors", "decide") == len(EXPECT_DOWN)
    own_redis.start()
    time.sleep(BREAKER_MS / 1000 + 0.05)
    resumed = check(limiter, "quota_closed")
    assert isinstance(resumed.decision, Allow) and resumed.reservation is not None and resumed.error is None


def test_breaker_skips_redis_while_open(own_redis):
    limiter = limiter_for(own_redis.port)
    storage = limiter.storage
    own_redis.stop()
    check(limiter, "rate_open")
    calls = storage.calls
    out = check(limiter, "quota_closed")
    assert isinstance(out.decision, Deny) and "circuit open" in out.error and storage.calls == calls  # no round trip


def test_rate_limits_hold_in_process_while_redis_is_down_and_the_outage_is_counted(own_redis):
    """Issue 15.4: a fault-tolerant rate limit is never waved through: with Redis gone it is decided in process."""
    limiter = limiter_for(own_redis.port)
    cfg = parse_config({"policies": [{"name": "m", "limit": 3, "period": "minute"}]})
    own_redis.stop()
    outs = [limiter.check(build_batch(cfg, ID, None, "GET", time.time())) for _ in range(5)]
    # Redis may have admitted the whole burst just before it went: in process only the sustained rate is added
    assert [isinstance(o.decision, Allow) for o in outs] == [True, False, False, False, False]
    assert all(o.error for o in outs)  # every one of them was decided without Redis, and says so
    refused = outs[1].decision
    assert (
        refused.status == 429 and refused.code == "rate_limited" and refused.headers["RateLimit"].startswith('"m";r=0')
    )
    assert [o.breaker_opened for o in outs] == [True, False, False, False, False]  # counted and logged once
    assert limiter.metrics.value("breaker_open", "decide") == 1
    assert limiter.metrics.value("degraded", "decide") == 5
    assert limiter.metrics.value("throttled", "m", "local") == 4
    assert limiter.metrics.value("fail_open", "quota") == 0


def test_the_breaker_state_and_quota_utilisation_are_valid_prometheus_metrics(own_redis):
    """Issue 18: a real histogram (buckets, _sum, _count; a ratio named _ratio) and a gauge that is 1 while the
    breaker is open and 0 once it closes, as Prometheus' own parser reads them."""
    from prometheus_client.parser import text_string_to_metric_families
    from storyverse_plugins.quota.metrics import Metrics

    limiter = limiter_for(own_redis.port)
    metrics = limiter.metrics = Metrics()
    metrics.watch_breaker(limiter.storage)

    def scrape() -> dict:
        return {s.name + repr(sorted(s.labels.items())): s.value for f in
                text_string_to_metric_families(metrics.render()) for s in f.samples}  # fmt: skip

    for _ in range(2):
        check(limiter, "quota_closed")  # 0 of 5 used, then 1 held: 0.2 and 0.4 full when checked
    families = {f.name: f.type for f in text_string_to_metric_families(metrics.render())}
    assert families["sv_quota_utilisation_ratio"] == "histogram" and families["sv_quota_redis_breaker_open"] == "gauge"
    samples = scrape()
    assert samples["sv_quota_utilisation_ratio_count[('quota', 'stories')]"] == 2
    assert abs(samples["sv_quota_utilisation_ratio_sum[('quota', 'stories')]"] - 0.6) < 1e-9
    assert samples["sv_quota_utilisation_ratio_bucket[('le', '0.5'), ('quota', 'stories')]"] == 2
    assert samples["sv_quota_redis_breaker_open[]"] == 0
    own_redis.stop()
    check(limiter, "rate_open")
    assert scrape()["sv_quota_redis_breaker_open[]"] == 1
    own_redis.start()
    time.sleep(BREAKER_MS / 1000 + 0.05)
    assert scrape()["sv_quota_redis_breaker_open[]"] == 0
