"""sv-quota handler over a FakeKong: PDK round trips, headers, problem bodies, log-phase settlement, crash paths."""

from __future__ import annotations

import json

import pytest
from storyverse_plugins.common.identity import SHARED_IDENTITY, SHARED_REQUEST_ID
from storyverse_plugins.quota.handler import SHARED_QUOTA, LogPlugin, Plugin
from storyverse_plugins.quota.limiter import Limiter, Options
from storyverse_plugins.quota.storage import MemoryStorage, StorageError

NOW = 1_741_975_200.0  # 2025-03-14 18:00 UTC
ID = {"sub": "u1", "role": "parent", "family_id": "f1", "tier": "basic", "tz": "Asia/Tokyo"}
STORY_ROUTE = {"policies": [{"name": "per-min", "limit": 30, "period": "minute"}], "quota": {"enabled": True}}


def plugin(config, storage=None):
    """sv-quota (access) with its sv-quota-log twin (log phase, same config) as `.log_side`, sharing one limiter."""
    limiter = Limiter(storage or MemoryStorage(), Options(jitter_max_s=0))
    p = Plugin(config, limiter=limiter, clock=lambda: NOW)
    p.log_side = LogPlugin(config, limiter=limiter, clock=lambda: NOW)
    return p


def request(fake_kong, p, identity=ID, ip="10.1.2.3"):
    fk = fake_kong({"kong.client.get_forwarded_ip": ip, "kong.request.get_method": "POST"})
    if identity is not None:
        fk.shared[SHARED_IDENTITY] = identity
    fk.shared[SHARED_REQUEST_ID] = "req-1"
    p.access(fk.kong)
    return fk


def log_phase(fake_kong, p, fk_access, status):
    fk = fake_kong({"kong.log.serialize": json.dumps({"response": {"status": status}})})
    fk.shared = dict(fk_access.shared)
    p.log_side.log(fk.kong)
    return fk


def test_allowed_story_request_costs_two_pdk_calls(fake_kong):
    fk = request(fake_kong, plugin(STORY_ROUTE))
    # one set: sv-edge's decision mark carries the response headers (sv-edge sets them) and the held unit
    assert [m for m, _ in fk.calls] == ["kong.ctx.shared.get", "kong.ctx.shared.set"]
    assert fk.shared[SHARED_QUOTA]["ok"] is True
    headers = fk.shared[SHARED_QUOTA]["headers"]
    assert headers["X-Quota-Limit"] == "5" and headers["X-Quota-Remaining"] == "4"
    assert headers["RateLimit-Policy"] == '"stories";q=5;w=86400'  # binding: fewest remaining
    assert int(headers["X-Quota-Reset"]) == 21 * 3600  # 18:00 UTC is 03:00 in Tokyo: 21 h to its midnight
    assert fk.shared[SHARED_QUOTA]["reservation"]["r"]


def test_rate_only_route_with_identity_costs_two_calls_and_on_deny_one(fake_kong):
    cfg = {"policies": [{"name": "per-s", "limit": 5, "period": "second"}]}
    assert len(request(fake_kong, plugin(cfg)).calls) == 2
    quiet = request(fake_kong, plugin({**cfg, "response_headers": "on_deny"}))
    assert [m for m, _ in quiet.calls] == ["kong.ctx.shared.get", "kong.ctx.shared.set"]  # the mark alone
    assert quiet.shared[SHARED_QUOTA] == {"ok": True}


def test_anonymous_route_reads_only_the_ip(fake_kong):
    p = plugin({"policies": [{"name": "login", "limit": 2, "period": "minute", "by": "ip"}]})
    for _ in range(2):
        fk = request(fake_kong, p, identity=None)
        assert [m for m, _ in fk.calls] == ["kong.client.get_forwarded_ip", "kong.ctx.shared.set"]
    fk = request(fake_kong, p, identity=None)
    status, body, headers = fk.exited
    assert status == 429 and body["code"] == "rate_limited" and body["request_id"] == "req-1"
    assert headers["Content-Type"] == "application/problem+json" and headers["Retry-After"] == "30"
    assert headers["RateLimit"] == '"login";r=0;t=60'
    assert fk.calls[-1][0] == "kong.response.exit"


def test_quota_exceeded_is_a_problem_document_and_costs_no_storage_when_cached(fake_kong):
    storage = MemoryStorage()
    p = plugin(STORY_ROUTE, storage)
    for _ in range(5):
        log_phase(fake_kong, p, request(fake_kong, p), 201)
    fk = request(fake_kong, p)
    status, body, headers = fk.exited
    assert (status, body["code"], body["limit"], body["remaining"]) == (429, "quota_exceeded", 5, 0)
    assert headers["X-Quota-Remaining"] == "0" and headers["Retry-After"] == str(21 * 3600)
    storage.decide = lambda batch: pytest.fail("blocked client reached storage")
    status, _, headers = request(fake_kong, p).exited
    assert status == 429 and headers["Retry-After"] == str(21 * 3600)  # the cache's trust cap is not the client's wait


CHARGED = [(201, True), (200, True), (504, True), (502, True), (499, True), (0, True)]
REFUNDED = [(500, False), (503, False), (409, False), (403, False), (401, False), (408, False), (429, False)]


@pytest.mark.parametrize(("status", "charged"), CHARGED + REFUNDED)
def test_log_charges_success_and_unknown_outcomes_and_refunds_definite_failures(fake_kong, status, charged):
    """Issue 15.3: a 504 (the gateway gave up, the backend may finish) is charged; only a definite failure is not."""
    p = plugin({**STORY_ROUTE, "abuse": {"enabled": False}})
    fk_log = log_phase(fake_kong, p, request(fake_kong, p), status)
    assert [m for m, _ in fk_log.calls] == ["kong.ctx.shared.get", "kong.log.serialize"]
    headers = request(fake_kong, p).shared[SHARED_QUOTA]["headers"]
    assert headers["X-Quota-Remaining"] == ("3" if charged else "4")


def test_log_without_reservation_or_quota_is_cheap(fake_kong):
    off = {"enabled": False}
    p = plugin({"policies": [{"name": "m", "limit": 5, "period": "minute"}], "abuse": off})
    fk = fake_kong()
    p.log_side.log(fk.kong)
    assert fk.calls == []
    q = plugin({**STORY_ROUTE, "abuse": off})
    fk = fake_kong()
    q.log_side.log(fk.kong)
    assert [m for m, _ in fk.calls] == ["kong.ctx.shared.get"]
    # abuse detection on (the default): one serialize() for the status on every request, nothing more on a 2xx
    fk = fake_kong({"kong.log.serialize": json.dumps({"response": {"status": 200}, "client_ip": "10.0.0.9"})})
    plugin({"policies": [{"name": "m", "limit": 5, "period": "minute"}]}).log_side.log(fk.kong)
    assert [m for m, _ in fk.calls] == ["kong.log.serialize"]


class Broken(MemoryStorage):
    def decide(self, batch):
        raise StorageError("redis down")


def test_storage_failure_follows_fault_tolerant(fake_kong):
    fk = request(fake_kong, plugin(STORY_ROUTE, Broken()))  # quota fails closed by default
    assert fk.exited[0] == 503 and fk.exited[1]["code"] == "rate_limit_unavailable"
    open_cfg = {**STORY_ROUTE, "quota": {"enabled": True, "fault_tolerant": True}}
    fk = request(fake_kong, plugin(open_cfg, Broken()))
    assert fk.exited is None and "kong.log.err" in [m for m, _ in fk.calls]
    assert "reservation" not in fk.shared[SHARED_QUOTA]  # let through uncharged, as configured


def test_unexpected_exception_exits_500_unless_fail_open(fake_kong):
    class Boom(MemoryStorage):
        def decide(self, batch):
            raise RuntimeError("bug")

    fk = request(fake_kong, plugin(STORY_ROUTE, Boom()))
    assert fk.exited[0] == 500 and fk.exited[1]["code"] == "internal_error"
    fk = request(fake_kong, plugin({"policies": [{"name": "m", "limit": 5, "period": "minute"}]}, Boom()))
    assert fk.exited is None and fk.calls[-1][0] == "kong.log.err"


def test_bad_config_is_rejected_at_instance_start():
    with pytest.raises(ValueError, match="unique"):
        Plugin({"policies": [{"name": "a", "limit": 1, "period": "second"}] * 2})


def test_every_breaker_opening_is_logged_other_redis_errors_once_a_second(fake_kong):
    class Opens(MemoryStorage):
        def __init__(self):
            super().__init__()
            self.opened = [True, False, True]

        def decide(self, batch):
            raise StorageError("redis decide failed: TimeoutError", self.opened.pop(0))

    # no over-limit cache: every request reaches the (failing) storage, whatever the in-process fallback answers
    limiter = Limiter(Opens(), Options(jitter_max_s=0, use_cache=False))
    p = Plugin({"policies": [{"name": "m", "limit": 5, "period": "minute"}]}, limiter=limiter, clock=lambda: NOW)
    logged = [len(request(fake_kong, p).called("kong.log.err")) for _ in range(3)]  # same second (fixed clock)
    assert logged == [1, 0, 1]
