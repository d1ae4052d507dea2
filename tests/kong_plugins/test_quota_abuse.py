"""sv-quota abuse detection: strikes → growing blocks (abuse.lua and its Python twin held to the same results),
the block folded into the decide round trip, credential stuffing on login, the admin list, metrics, the breaker."""

from __future__ import annotations

import json
import os
import urllib.request

import pytest
import redis
from storyverse_contracts import keys
from storyverse_plugins.common.decision import Allow, Deny
from storyverse_plugins.common.identity import SHARED_IDENTITY, SHARED_QUOTA_LOG, SHARED_REQUEST_ID
from storyverse_plugins.common.redis_pool import RedisSettings, build_client
from storyverse_plugins.quota import abuse
from storyverse_plugins.quota.handler import SHARED_LOGIN, LogPlugin, Plugin, login_fingerprint
from storyverse_plugins.quota.limiter import Limiter, Options
from storyverse_plugins.quota.metrics import Metrics, serve_from_env
from storyverse_plugins.quota.policy import build_batch, build_strike
from storyverse_plugins.quota.schema import parse_config
from storyverse_plugins.quota.storage import MemoryStorage, RedisStorage, StorageError

DB = 11
NOW = 1_741_975_200.0
ID = {"sub": "u1", "role": "parent", "family_id": "f1", "tier": "basic", "tz": "UTC"}
ABUSE = {"threshold": 3, "window": 60, "block_base": 60, "block_max": 200, "memory": 1000}
USER_ROUTE = parse_config({"policies": [{"name": "m", "limit": 100, "period": "minute"}], "abuse": ABUSE})
LOGIN = {"policies": [{"name": "login", "limit": 1000, "period": "minute", "by": "ip"}]}
LOGIN_ROUTE = {**LOGIN, "abuse": {**ABUSE, "threshold": 100, "login": True, "login_distinct": 4}}


@pytest.fixture(scope="module")
def redis_db():
    client = build_client(RedisSettings(db=DB))
    client.ping()
    return client


@pytest.fixture(params=["memory", "redis"])
def storage(request, redis_db):
    if request.param == "memory":
        return MemoryStorage()
    redis_db.flushdb()
    return RedisStorage(lambda: redis_db, breaker_ms=0)


def limiter_on(storage, cache=True):
    return Limiter(storage, Options(jitter_max_s=0, use_cache=cache), metrics=Metrics())


def strike(limiter, cfg=USER_ROUTE, identity=ID, ip="10.0.0.7", at=NOW, fp=""):
    return limiter.strike(build_strike(cfg, identity, ip, fp, at))


def test_strikes_block_with_doubling_capped_duration_then_forget(storage):
    lim = limiter_on(storage)
    got = [strike(lim) for _ in range(3)]
    assert [r.blocked for r in got] == [False, False, True] and [r.strikes for r in got] == [1, 2, 3]
    assert got[2].new_block and got[2].reason == "strikes" and got[2].duration_ms == 60_000 and got[2].level == 1
    assert strike(lim, at=NOW + 30).reason == "blocked"  # strikes while blocked do not count or escalate
    durations = []
    t = NOW + 61
    for _ in range(3):  # each relapse within `memory` doubles the block, capped at block_max
        result = [strike(lim, at=t) for _ in range(3)][-1]
        durations.append(result.duration_ms)
        t += result.duration_ms / 1000 + 1
    assert durations == [120_000, 200_000, 200_000]
    later = t + 1000  # no block for `memory` seconds: back to the first step
    assert [strike(lim, at=later) for _ in range(3)][-1].duration_ms == 60_000
    assert lim.metrics.value("abuse_blocks", "account", "strikes") == 5


def test_strikes_outside_the_window_do_not_add_up(storage):
    lim = limiter_on(storage)
    for i in range(6):
        assert not strike(lim, at=NOW + i * 40).blocked  # 2 per 60 s window at most


def test_block_is_read_in_the_same_decide_round_trip_and_writes_nothing(storage):
    lim = limiter_on(storage, cache=False)
    cfg = parse_config({"policies": [{"name": "h", "limit": 2, "period": "hour"}], "abuse": ABUSE})
    batch = build_batch(cfg, ID, None, "POST", NOW)
    assert batch.block_key == keys.block_key(keys.abuse_key("{f:f1}", "u1")) == "sv:quota:v1:{f:f1}:blk:u:u1"
    assert isinstance(lim.check(batch).decision, Allow)
    for _ in range(3):
        strike(lim)
    calls = getattr(storage, "calls", 0)
    out = lim.check(build_batch(cfg, ID, None, "POST", NOW + 10))
    assert isinstance(out.decision, Deny) and out.decision.code == "rate_limited"
    assert out.decision.extra["reason"] == "abuse_block" and out.decision.headers["Retry-After"] == "50"
    assert getattr(storage, "calls", 1) - calls in (0, 1)  # redis: exactly one script call
    assert lim.metrics.value("throttled", "abuse-block", "redis") == 1
    after = lim.check(build_batch(cfg, ID, None, "POST", NOW + 61)).decision
    assert after.response_headers["RateLimit"].startswith('"h";r=0;')  # 2 per hour: the blocked one was not charged


def test_other_subjects_are_not_blocked(storage):
    lim = limiter_on(storage)
    for _ in range(3):
        strike(lim)
    other = {**ID, "sub": "u2"}
    assert isinstance(lim.check(build_batch(USER_ROUTE, other, None, "GET", NOW)).decision, Allow)


def test_blocked_subject_is_then_answered_from_the_process_cache(storage):
    lim = limiter_on(storage)
    for _ in range(3):
        strike(lim)
    storage.decide = lambda batch: pytest.fail("a blocked subject reached storage")
    deny = lim.check(build_batch(USER_ROUTE, ID, None, "POST", NOW + 1)).decision
    assert deny.code == "rate_limited" and deny.headers["Retry-After"] == "59"


def test_credential_stuffing_blocks_the_ip_after_distinct_failed_accounts(storage):
    cfg = parse_config(LOGIN_ROUTE)
    lim = limiter_on(storage)
    same = [strike(lim, cfg, None, fp=login_fingerprint(b'{"email": "a@x.io"}', "email")) for _ in range(6)]
    assert not any(r.blocked for r in same) and same[-1].distinct_failures == 1  # one account: brute force, not this
    fps = [login_fingerprint(json.dumps({"email": f"user{i}@x.io"}), "email") for i in range(3)]
    results = [strike(lim, cfg, None, fp=fp) for fp in fps]
    assert [r.blocked for r in results] == [False, False, True] and results[-1].reason == "credential_stuffing"
    assert results[-1].distinct_failures == 4
    assert lim.metrics.value("abuse_blocks", "ip", "credential_stuffing") == 1
    deny = lim.check(build_batch(cfg, None, "10.0.0.7", "POST", NOW + 1)).decision
    assert deny.code == "rate_limited" and deny.extra["reason"] == "abuse_block"
    assert isinstance(lim.check(build_batch(cfg, None, "10.0.0.8", "POST", NOW + 1)).decision, Allow)


def test_login_fingerprint_normalises_and_survives_junk():
    assert login_fingerprint(b'{"email": " A@X.io "}', "email") == login_fingerprint('{"email": "a@x.io"}', "email")
    assert login_fingerprint(b"not json", "email") == login_fingerprint(None, "email")
    assert len(login_fingerprint(b"[]", "email")) == 16


def test_admin_list_and_unblock(redis_db):
    redis_db.flushdb()
    lim = limiter_on(RedisStorage(lambda: redis_db, breaker_ms=0), cache=False)
    for _ in range(3):
        strike(lim)
        strike(lim, parse_config({**LOGIN, "abuse": ABUSE}), None, ip="10.9.9.9")
    blocks = abuse.list_blocks(redis_db, now_ms=int(NOW * 1000) + 1000)
    assert sorted((b["kind"], b["subject"], b["reason"], b["level"], b["remaining_s"]) for b in blocks) == [
        ("account", "u1", "strikes", 1, 59),
        ("ip", "10.9.9.9", "strikes", 1, 59),
    ]
    assert redis_db.exists("sv:quota:v1:{f:f1}:blk:u:u1")  # the copy decide.lua reads in its MGET
    assert abuse.unblock(redis_db, keys.abuse_key("{f:f1}", "u1"))
    assert not redis_db.exists("sv:quota:v1:{f:f1}:blk:u:u1")
    batch = build_batch(USER_ROUTE, ID, None, "POST", NOW + 1)
    assert isinstance(lim.check(batch).decision, Allow)
    assert [b["subject"] for b in abuse.list_blocks(redis_db, now_ms=int(NOW * 1000) + 1000)] == ["10.9.9.9"]
    assert abuse.list_blocks(redis_db, now_ms=int(NOW * 1000) + 61_000) == []  # lapsed entries are pruned


# -- handler ---------------------------------------------------------------------------------------------------------
def serialized(status, ip="10.0.0.7", upstream=True):
    """A kong.log.serialize() record; `upstream`: the backend answered (Kong: upstream_status "" when not proxied)."""
    return json.dumps(
        {"response": {"status": status}, "client_ip": ip, "upstream_status": str(status) if upstream else ""}
    )


def pair(config, limiter):
    """sv-quota (access) and sv-quota-log (log) on one route: the same config, one process-wide limiter in tests."""
    return Plugin(config, limiter=limiter, clock=lambda: NOW), LogPlugin(config, limiter=limiter, clock=lambda: NOW)


def test_sv_quota_has_no_log_phase_and_sv_quota_log_only_its_mark_in_access(fake_kong):
    assert hasattr(Plugin, "access") and not hasattr(Plugin, "log")
    assert hasattr(LogPlugin, "log") and hasattr(LogPlugin, "access")
    fk = fake_kong()
    LogPlugin({"policies": [{"name": "m", "limit": 5, "period": "minute"}]}, limiter_on(MemoryStorage())).access(
        fk.kong
    )
    assert fk.calls == [("kong.ctx.shared.set", (SHARED_QUOTA_LOG, True))]  # sv-edge's mark: the settler is up


def test_handler_log_strikes_the_account_on_user_routes(fake_kong):
    storage = MemoryStorage()
    p, log = pair({"policies": [{"name": "m", "limit": 100, "period": "minute"}], "abuse": ABUSE}, limiter_on(storage))
    for _ in range(3):
        fk = fake_kong({"kong.log.serialize": serialized(403)})
        fk.shared[SHARED_IDENTITY] = ID
        log.log(fk.kong)
    assert [m for m, _ in fk.calls] == ["kong.log.serialize", "kong.ctx.shared.get", "kong.log.warn"]
    fk = fake_kong()
    fk.shared.update({SHARED_IDENTITY: ID, SHARED_REQUEST_ID: "r-9"})
    p.access(fk.kong)
    status, body, headers = fk.exited
    assert status == 429 and body["reason"] == "abuse_block" and headers["Retry-After"] == "60"


def test_handler_log_strikes_the_ip_when_no_identity_and_ignores_2xx(fake_kong):
    storage = MemoryStorage()
    _, p = pair({"policies": [{"name": "m", "limit": 100, "period": "minute"}], "abuse": ABUSE}, limiter_on(storage))
    fk = fake_kong({"kong.log.serialize": serialized(200)})
    p.log(fk.kong)
    assert [m for m, _ in fk.calls] == ["kong.log.serialize"] and not storage._abuse
    for _ in range(3):
        p.log(fake_kong({"kong.log.serialize": serialized(401)}).kong)  # e.g. sv-jwt's 401: no identity
    assert storage._abuse[keys.abuse_key("{ip:10.0.0.7}")].until > NOW * 1000


@pytest.mark.parametrize(("upstream", "gateway_403", "struck"), [(False, False, 0), (True, False, 3), (False, True, 3)])
def test_only_a_backend_403_is_a_strike_unless_gateway_403(fake_kong, upstream, gateway_403, struck):
    """Issue 15.7: sv-rbac's 403 (answered by the gateway, nothing proxied) is a policy answer: a child's app that
    keeps asking for a parent's page is refused each time, never blocked. A backend's 403 still counts."""
    storage = MemoryStorage()
    abuse = {**ABUSE, "gateway_403": gateway_403}
    p, log = pair({"policies": [{"name": "m", "limit": 100, "period": "minute"}], "abuse": abuse}, limiter_on(storage))
    for _ in range(3):
        fk = fake_kong({"kong.log.serialize": serialized(403, upstream=upstream)})
        fk.shared[SHARED_IDENTITY] = ID
        log.log(fk.kong)
    assert log.limiter.metrics.value("abuse_strikes", "403") == struck
    assert bool(storage._abuse) is bool(struck)
    fk = fake_kong()
    fk.shared[SHARED_IDENTITY] = ID
    p.access(fk.kong)
    assert (fk.exited is not None) is bool(struck)  # blocked only after strikes


def test_a_route_with_abuse_off_lets_a_blocked_ip_through_and_strikes_nothing(fake_kong):
    """Issue 15.7: a family behind one NAT whose IP is blocked still gets the JWKS, discovery and its refresh."""
    storage = MemoryStorage()
    limiter = limiter_on(storage)
    policies = [{"name": "ip", "limit": 100, "period": "minute", "by": "ip"}]
    _, log = pair({"policies": policies, "abuse": ABUSE}, limiter)
    for _ in range(3):
        log.log(fake_kong({"kong.log.serialize": serialized(401, ip="10.0.0.7", upstream=False)}).kong)
    login, _ = pair({"policies": policies, "abuse": ABUSE}, limiter)
    jwks, jwks_log = pair({"policies": policies, "abuse": {"enabled": False}}, limiter)

    def call(p):
        fk = fake_kong({"kong.client.get_forwarded_ip": "10.0.0.7"})
        p.access(fk.kong)
        return fk.exited[0] if fk.exited else 200

    assert call(login) == 429 and call(jwks) == 200
    before = dict(storage._abuse)
    jwks_log.log(fake_kong({"kong.log.serialize": serialized(401, ip="10.0.0.8")}).kong)
    assert storage._abuse.keys() == before.keys()  # no strike from a route with abuse off


def test_log_phase_leaves_429s_to_sv_quota_access(fake_kong):
    storage = MemoryStorage()
    _, p = pair({"policies": [{"name": "m", "limit": 100, "period": "minute"}], "abuse": ABUSE}, limiter_on(storage))
    for _ in range(5):
        p.log(fake_kong({"kong.log.serialize": serialized(429)}).kong)
    assert not storage._abuse


def test_sv_quota_strikes_its_own_429_in_access_without_pdk_calls(fake_kong):
    storage = MemoryStorage()
    lim = limiter_on(storage, cache=False)
    cfg = {"policies": [{"name": "m", "limit": 1, "period": "minute"}], "abuse": {**ABUSE, "threshold": 2}}
    p, _ = pair(cfg, lim)
    statuses, calls = [], []
    for _ in range(3):
        fk = fake_kong()
        fk.shared.update({SHARED_IDENTITY: ID, SHARED_REQUEST_ID: "r-1"})
        p.access(fk.kong)
        statuses.append(fk.exited[0] if fk.exited else 200)
        calls.append([m for m, _ in fk.calls])
    assert statuses == [200, 429, 429]
    # nothing after kong.response.exit: the strike is a Redis call only
    assert calls[2] == ["kong.ctx.shared.get", "kong.ctx.shared.get", "kong.response.exit"]
    assert lim.metrics.value("abuse_strikes", "429") == 2
    assert storage._abuse[keys.abuse_key("{f:f1}", "u1")].until > NOW * 1000  # the second strike blocked


def test_daily_quota_refusal_is_not_a_strike(fake_kong):
    storage = MemoryStorage()
    lim = limiter_on(storage, cache=False)
    cfg = {"quota": {"enabled": True}, "abuse": {**ABUSE, "threshold": 1}}
    p, _ = pair(cfg, lim)
    ident = {**ID, "daily_story_limit": 1}
    statuses = []
    for _ in range(3):
        fk = fake_kong()
        fk.shared.update({SHARED_IDENTITY: ident, SHARED_REQUEST_ID: "r-1"})
        p.access(fk.kong)
        statuses.append(fk.exited[0] if fk.exited else 200)
    assert statuses[-1] == 429 and not storage._abuse and lim.metrics.value("abuse_strikes", "429") == 0


def test_handler_login_route_reads_the_body_once_and_counts_distinct_failures(fake_kong):
    p, logp = pair(LOGIN_ROUTE, limiter_on(MemoryStorage()))
    for i in range(4):
        body = json.dumps({"email": f"victim{i}@x.io", "password": "x"})
        fk = fake_kong({"kong.client.get_forwarded_ip": "10.0.0.7", "kong.request.get_raw_body": body})
        p.access(fk.kong)
        assert [m for m, _ in fk.calls] == [
            "kong.client.get_forwarded_ip",
            "kong.ctx.shared.set",  # sv-edge's mark, with the response headers
            "kong.request.get_raw_body",
            "kong.ctx.shared.set",
        ]
        log = fake_kong({"kong.log.serialize": serialized(401)})
        log.shared = dict(fk.shared)
        logp.log(log.kong)
    assert [m for m, _ in log.calls][:2] == ["kong.log.serialize", "kong.ctx.shared.get"]
    assert log.called("kong.ctx.shared.get") == [(SHARED_LOGIN,)]
    fk = fake_kong({"kong.client.get_forwarded_ip": "10.0.0.7"})
    p.access(fk.kong)
    assert fk.exited[0] == 429 and fk.exited[1]["reason"] == "abuse_block"


def test_abuse_login_needs_an_ip_route():
    with pytest.raises(ValueError, match=r"abuse\.login"):
        parse_config({"policies": [{"name": "m", "limit": 1, "period": "second"}], "abuse": {"login": True}})
    with pytest.raises(ValueError, match="block_max"):
        parse_config({**LOGIN, "abuse": {"block_base": 100, "block_max": 10}})


def test_storage_error_in_strike_is_reported_not_raised(fake_kong):
    class Broken(MemoryStorage):
        def strike(self, strike):
            raise StorageError("redis down")

    lim = limiter_on(Broken())
    _, p = pair({"policies": [{"name": "m", "limit": 5, "period": "minute"}]}, lim)
    fk = fake_kong({"kong.log.serialize": serialized(401)})
    p.log(fk.kong)
    assert fk.calls[-1][0] == "kong.log.err" and lim.metrics.value("redis_errors", "abuse") == 1


# -- metrics and breaker ---------------------------------------------------------------------------------------------
def test_metrics_render_abuse_and_listen_on_the_configured_host(monkeypatch):
    m = Metrics()
    m.inc("abuse_blocks", "ip", "credential_stuffing")
    assert 'sv_quota_abuse_blocks_total{subject="ip",reason="credential_stuffing"} 1' in m.render()
    monkeypatch.setenv("SV_QUOTA_METRICS_PORT", "0")
    assert serve_from_env() is None  # the chart's 0 disables it
    from kong_emulator.testing import free_port

    port = free_port()
    monkeypatch.setenv("SV_QUOTA_METRICS_PORT", str(port))
    monkeypatch.delenv("SV_QUOTA_METRICS_HOST", raising=False)
    server = serve_from_env()
    try:
        assert server.server_address[0] == "127.0.0.1"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            assert b"sv_quota_abuse_blocks_total" in resp.read()
    finally:
        server.shutdown()
        server.server_close()
    monkeypatch.setenv("SV_QUOTA_METRICS_HOST", "0.0.0.0")  # what the Helm chart sets
    server = serve_from_env()
    try:
        assert server.server_address[0] == "0.0.0.0"
    finally:
        server.shutdown()
        server.server_close()
    assert os.environ["SV_QUOTA_METRICS_HOST"] == "0.0.0.0"


class _Slow:
    """A client whose script calls time out `fail` times, then work."""

    def __init__(self, fail: int) -> None:
        self.fail = fail

    def register_script(self, _text):
        def run(keys, args):
            if self.fail:
                self.fail -= 1
                raise redis.TimeoutError("Timeout reading from socket")
            return [1, 0, None, None]  # allowed, not blocked, one rate: a fresh bucket (decide.lua's raw answer)

        return run


def test_a_short_stall_does_not_open_the_breaker_but_a_hung_redis_does():
    batch = build_batch(USER_ROUTE, ID, None, "GET", NOW)
    storage = RedisStorage(lambda: _Slow(1), breaker_ms=500)
    assert storage.decide(batch).allowed and storage.calls == 2  # one timeout: retried once (idempotent)
    clock = [0.0]
    storage = RedisStorage(lambda: _Slow(99), breaker_ms=500, monotonic=lambda: clock[0])
    for t in (0.1, 0.2, 0.4):  # timeouts, but less than breaker_ms since the last success: keep trying Redis
        clock[0] = t
        with pytest.raises(StorageError, match="Timeout"):
            storage.decide(batch)
    clock[0] = 0.6  # nothing succeeded for 500 ms: open
    with pytest.raises(StorageError, match="Timeout"):
        storage.decide(batch)
    calls = storage.calls
    with pytest.raises(StorageError, match="circuit open"):
        storage.decide(batch)
    assert storage.calls == calls


def test_decide_is_retried_once_after_a_timeout_without_double_reserving(redis_db):
    redis_db.flushdb()
    real = RedisStorage(lambda: redis_db, breaker_ms=0)
    cfg = parse_config({"quota": {"enabled": True}, "abuse": {"enabled": False}})
    batch = build_batch(cfg, {**ID, "daily_story_limit": 1}, None, "POST", NOW)

    class RanThenTimedOut:
        """The first call runs in Redis but its answer is lost (a read timeout); the retry must see its own unit."""

        def __init__(self):
            self.first = True

        def register_script(self, text):
            script = redis_db.register_script(text)

            def run(keys, args):
                result = script(keys=keys, args=args)
                if self.first:
                    self.first = False
                    raise redis.TimeoutError("Timeout reading from socket")
                return result

            return run

    storage = RedisStorage(lambda: RanThenTimedOut(), breaker_ms=10_000)
    verdict = storage.decide(batch)
    assert verdict.allowed and storage.calls == 2  # the child's limit of 1 is not used up by its own first attempt
    assert [c.reserved for c in verdict.counters] == [1, 1]
    assert real.decide(build_batch(cfg, {**ID, "daily_story_limit": 1}, None, "POST", NOW)).allowed is False


def test_kong_yml_scopes_abuse_blocks_away_from_keys_discovery_and_refresh():
    """Issue 15.7, as deployed: exactly the routes a family behind one NAT needs to stay signed in are exempt."""
    from pathlib import Path

    import yaml

    config = yaml.safe_load((Path(__file__).resolve().parents[2] / "kong.yml").read_text())
    exempt, enforced = set(), 0
    for service in config["services"]:
        for route in service.get("routes", []):
            for plugin in route.get("plugins", []):
                if plugin["name"] == "sv-quota":
                    if parse_config(plugin["config"]).abuse.enabled:
                        enforced += 1
                    else:
                        exempt.add(route["name"].removeprefix("v1-"))
    assert exempt == {"auth-refresh", "jwks", "discovery"} and enforced > 40
