"""Metrics batching (issue 3 perf): per-process batches reach Redis at most every interval (or N increments), before
/metrics renders and at exit; totals across processes stay exact. (Part of the usage/billing work item's files.)"""

import re
import time

import pytest
import redis
from auth_support import TEST_REDIS_URL
from storyverse_auth import metrics
from storyverse_auth.keys import METRICS_KEY


def _value(text: str, sample: str) -> float:
    match = re.search(rf"^{re.escape(sample)} (\d+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


@pytest.fixture
def r(app):  # the app fixture flushes the test Redis db
    return redis.Redis.from_url(TEST_REDIS_URL, decode_responses=True)


@pytest.fixture
def batched(app):
    app.config.update(METRICS_FLUSH_INTERVAL=3600, METRICS_FLUSH_MAX=1000)
    return app


def test_increments_wait_for_the_interval_then_go_in_one_write(batched, client, auth, r):
    auth.tokens()
    assert not r.hgetall(METRICS_KEY)  # batched, not written per request
    text = client.get("/metrics").get_data(as_text=True)  # this process flushes before it renders
    assert _value(text, 'sv_auth_logins_total{outcome="success"}') == 1
    assert r.hget(METRICS_KEY, 'sv_auth_tokens_issued_total{kind="access"}') == "1"


def test_a_full_batch_is_written_at_once(batched, client, auth, r):
    batched.config["METRICS_FLUSH_MAX"] = 2
    auth.tokens()  # register + login: more than two pending increments
    assert r.hget(METRICS_KEY, 'sv_auth_logins_total{outcome="success"}') == "1"


def test_batches_of_two_processes_add_up(r):
    one = metrics.Batch(redis.Redis.from_url(TEST_REDIS_URL), 3600, 1000)
    two = metrics.Batch(redis.Redis.from_url(TEST_REDIS_URL), 3600, 1000)
    for _ in range(3):
        one.add({"sv_auth_refresh_reuse_total": 1})
    two.add({"sv_auth_refresh_reuse_total": 2})
    assert r.hget(METRICS_KEY, "sv_auth_refresh_reuse_total") is None
    one.flush()
    two.flush()
    two.flush()  # nothing pending: no double count
    assert r.hget(METRICS_KEY, "sv_auth_refresh_reuse_total") == "5"


def test_the_flusher_thread_sends_an_idle_batch(r):
    batch = metrics.Batch(redis.Redis.from_url(TEST_REDIS_URL), 0.05, 1000)
    batch.add({"sv_auth_refresh_reuse_total": 1})
    for _ in range(100):
        if r.hget(METRICS_KEY, "sv_auth_refresh_reuse_total") == "1":
            break
        time.sleep(0.02)
    assert r.hget(METRICS_KEY, "sv_auth_refresh_reuse_total") == "1"


def test_testing_default_writes_every_request(client, auth, r):
    auth.tokens()
    assert r.hget(METRICS_KEY, 'sv_auth_logins_total{outcome="success"}') == "1"
