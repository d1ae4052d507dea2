"""sv-quota core: schema rules, calendar, keys, and the algorithms on both storages (memory and real Redis db 11)."""

from __future__ import annotations

import datetime as dt
import threading
from zoneinfo import ZoneInfo

import pytest
import redis
from storyverse_contracts import keys
from storyverse_plugins.common.decision import Allow, Deny
from storyverse_plugins.common.redis_pool import RedisSettings, build_client
from storyverse_plugins.quota.limiter import Limiter, Options
from storyverse_plugins.quota.policy import build_batch
from storyverse_plugins.quota.schema import parse_config
from storyverse_plugins.quota.storage import MemoryStorage, RedisStorage, decide_args, load_lua
from storyverse_plugins.quota.tiers import local_day

DB = 11
T0 = dt.datetime(2025, 3, 14, 18, 0, tzinfo=ZoneInfo("UTC")).timestamp()


def ident(sub="u1", family="fam1", tier="basic", tz="UTC", **extra):
    return {"sub": sub, "role": "parent", "family_id": family, "tier": tier, "tz": tz, **extra}


def quota_cfg(**quota):
    return parse_config({"quota": {"enabled": True, **quota}})


def rate_cfg(*policies):
    return parse_config({"policies": list(policies)})


@pytest.fixture(scope="module")
def redis_db():
    client = build_client(RedisSettings(db=DB, timeout_ms=50))
    client.ping()  # Redis is required: fail loudly rather than skip
    return client


@pytest.fixture(params=["memory", "redis"])
def storage(request, redis_db):
    if request.param == "memory":
        return MemoryStorage()
    redis_db.flushdb()
    store = RedisStorage(lambda: redis_db, breaker_ms=0)
    store.grant = lambda key, units: redis_db.hincrby(key, "grant", units)
    return store


@pytest.fixture
def limiter(storage):
    return Limiter(storage, Options(jitter_max_s=0), rng=lambda a, b: 0)


class Clock:
    def __init__(self, t=T0):
        self.t = t

    def __call__(self):
        return self.t


def decide(limiter, cfg, identity=None, ip="10.0.0.1", now=T0, method="POST"):
    return limiter.check(build_batch(cfg, identity, ip, method, now))


# -- schema ----------------------------------------------------------------------------------------------------------
def test_defaults_and_kong_nulls():
    cfg = parse_config({"policies": [{"name": "m", "limit": 10, "period": "minute", "by": None}], "__seq__": 3})
    assert cfg.policies[0].by == "auto" and cfg.policies[0].fault_tolerant and not cfg.quota.enabled
    assert [p.daily for p in cfg.plans] == [5, 20, 100, 1000] and cfg.redis.timeout_ms == 100


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({}, "at least one"),
        ({"policies": [{"name": "a", "limit": 1, "period": "second"}] * 2}, "unique"),
        (
            {"policies": [{"name": "a", "limit": 1, "period": "second", "by": "ip"}], "quota": {"enabled": True}},
            "mixed",
        ),
        ({"policies": [{"name": "A b", "limit": 1, "period": "second"}]}, "must match"),
        ({"policies": [{"name": "a", "limit": 0, "period": "second"}]}, "limit must be"),
        ({"quota": {"enabled": True, "default_tier": "gold"}}, "default_tier"),
        ({"quota": {"enabled": True, "occasions": [{"date": "2025-13-01", "extra": 1}]}}, "month"),
        ({"quota": {"enabled": True}, "redis_timeout_ms": 500}, "between"),
        ({"quota": {"enabled": True}, "redis_cluster_nodes": ["a:1"], "redis_database": 2}, "database"),
    ],
)
def test_cross_field_rules(raw, message):
    with pytest.raises(ValueError, match=message):
        parse_config(raw)


# -- calendar --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("tz", "local_before", "date_before", "date_after"),
    [
        ("America/New_York", (2025, 3, 14, 23, 59, 59), "2025-03-14", "2025-03-15"),
        ("Asia/Tokyo", (2025, 3, 14, 23, 59, 59), "2025-03-14", "2025-03-15"),
    ],
)
def test_midnight_in_family_zone(tz, local_before, date_before, date_after):
    before = dt.datetime(*local_before, tzinfo=ZoneInfo(tz)).timestamp()
    day = local_day(before, tz)
    assert day.date == date_before and day.reset_s == before + 1
    assert local_day(before + 1, tz).date == date_after


def test_quota_resets_at_local_midnight_not_utc(limiter):
    cfg = quota_cfg()
    for tz in ("America/New_York", "Asia/Tokyo"):
        who = ident(sub="s-" + tz, family="f-" + tz, tz=tz)
        evening = dt.datetime(2025, 3, 14, 20, 0, tzinfo=ZoneInfo(tz)).timestamp()
        for _ in range(5):
            ok = decide(limiter, cfg, who, now=evening)
            limiter.settle(ok.reservation, True, int(evening * 1000))
        out = decide(limiter, cfg, who, now=evening)
        assert out.decision.code == "quota_exceeded"
        assert int(out.decision.headers["X-Quota-Reset"]) == 4 * 3600
        assert int(out.decision.headers["Retry-After"]) == 4 * 3600
        utc_midnight = dt.datetime(2025, 3, 15, 0, 0, 1, tzinfo=ZoneInfo("UTC")).timestamp()
        if tz == "America/New_York":  # UTC midnight is 20:00 in New York: still the same family day
            assert decide(limiter, cfg, who, now=utc_midnight + 3600).decision.code == "quota_exceeded"
        after = dt.datetime(2025, 3, 15, 0, 0, 1, tzinfo=ZoneInfo(tz)).timestamp()
        fresh = decide(limiter, cfg, who, now=after)
        assert isinstance(fresh.decision, Allow) and fresh.decision.response_headers["X-Quota-Remaining"] == "4"


def test_bad_tz_claim_falls_back_to_default():
    assert local_day(T0, "Mars/Olympus", "Asia/Tokyo").date == "2025-03-15"


# -- keys ------------------------------------------------------------------------------------------------------------
def test_all_keys_of_a_request_share_one_slot():
    cfg = parse_config(
        {"policies": [{"name": "m", "limit": 5, "period": "minute"}], "quota": {"enabled": True, "scope": "user"}}
    )
    batch = build_batch(cfg, ident(daily_story_limit=2), None, "POST", T0)
    all_keys = decide_args(batch)[0]
    assert all_keys[1] == keys.block_key(keys.abuse_key("{f:fam1}", "u1"))  # the account's block: same slot, script
    assert len(all_keys) == 4 and all(k.startswith("sv:quota:v1:{f:fam1}:") for k in all_keys)
    assert {redis.cluster.key_slot(k.encode()) for k in all_keys} == {redis.cluster.key_slot(b"{f:fam1}")}
    assert keys.subject_tag(None, "::1") == "{ip:::1}" and keys.subject_tag({"sub": "a{b}"}, None) == "{u:a_b_}"


# -- rate limits (GCRA) ----------------------------------------------------------------------------------------------
def test_gcra_allows_limit_then_one_per_interval_without_boundary_burst(limiter):
    cfg = rate_cfg({"name": "per-min", "limit": 6, "period": "minute"})
    who = ident()
    results = [decide(limiter, cfg, who, now=T0).decision for _ in range(7)]
    assert [isinstance(d, Allow) for d in results] == [True] * 6 + [False]
    deny = results[-1]
    assert deny.code == "rate_limited" and deny.headers["Retry-After"] == "10"
    assert deny.headers["RateLimit-Policy"] == '"per-min";q=6;w=60'
    assert deny.headers["RateLimit"] == '"per-min";r=0;t=60'
    assert results[0].response_headers["RateLimit"] == '"per-min";r=5;t=10'
    # no window boundary: one minute later only the emission rate passes, not a fresh burst of 6
    assert isinstance(decide(limiter, cfg, who, now=T0 + 10).decision, Allow)
    assert isinstance(decide(limiter, cfg, who, now=T0 + 10.5).decision, Deny)
    assert isinstance(decide(limiter, cfg, who, now=T0 + 20).decision, Allow)


def test_premium_burst_and_ip_policies(limiter):
    cfg = rate_cfg({"name": "s", "limit": 2, "period": "second"})
    premium = ident(sub="p", family="fp", tier="premium")
    allowed = sum(isinstance(decide(limiter, cfg, premium).decision, Allow) for _ in range(10))
    assert allowed == 2 + 5  # premium rate_burst 5
    anon = rate_cfg({"name": "login", "limit": 3, "period": "hour", "by": "ip"})
    assert sum(isinstance(decide(limiter, anon, None, ip="1.2.3.4").decision, Allow) for _ in range(5)) == 3
    assert isinstance(decide(limiter, anon, None, ip="1.2.3.5").decision, Allow)


def test_remaining_never_exceeds_the_advertised_quota_with_a_burst(limiter):
    """Issue 21: `"stories-list-minute";q=120` came back with `r=124` (premium's burst of 5 on top of 120)."""
    cfg = rate_cfg({"name": "list", "limit": 120, "period": "minute"})
    premium = ident(sub="p2", family="fp2", tier="premium")
    for _ in range(8):
        headers = decide(limiter, cfg, premium).decision.response_headers
        q = int(headers["RateLimit-Policy"].split(";q=")[1].split(";")[0])
        r = int(headers["RateLimit"].split(";r=")[1].split(";")[0])
        assert q == 120 and 0 <= r <= q
    assert r == 120 - 3  # 8 of 125 taken: 117 are left, and every one of them is within q


def test_rejected_requests_consume_nothing(limiter):
    cfg = parse_config({"policies": [{"name": "h", "limit": 100, "period": "hour"}], "quota": {"enabled": True}})
    who = ident(daily_story_limit=1)
    assert isinstance(decide(limiter, cfg, who).decision, Allow)
    out = decide(limiter, cfg, who)  # child limit 1 is full: the hour policy must not be charged for this one
    assert out.decision.code == "quota_exceeded"
    ok = decide(limiter, parse_config({"policies": [{"name": "h", "limit": 100, "period": "hour"}]}), who)
    assert ok.decision.response_headers["RateLimit"].startswith('"h";r=98;')


def test_shadow_policy_reports_but_never_rejects(limiter):
    cfg = rate_cfg({"name": "s", "limit": 1, "period": "minute", "shadow": True})
    assert all(isinstance(decide(limiter, cfg, ident()).decision, Allow) for _ in range(3))
    assert limiter.metrics.value("shadow_rejects", "s", "redis") == 2


def test_overlimit_cache_answers_without_storage(limiter, storage):
    cfg = rate_cfg({"name": "s", "limit": 1, "period": "minute"})
    decide(limiter, cfg, ident())
    assert isinstance(decide(limiter, cfg, ident()).decision, Deny)
    storage.decide = lambda batch: pytest.fail("storage called for a cached subject")
    cached = decide(limiter, cfg, ident(), now=T0 + 30).decision
    assert cached.code == "rate_limited" and cached.headers["Retry-After"] == "30"
    assert limiter.metrics.value("throttled", "s", "cache") == 1


# -- quotas ----------------------------------------------------------------------------------------------------------
def test_reserve_commit_release(limiter):
    cfg = quota_cfg()
    who = ident()
    outs = [decide(limiter, cfg, who) for _ in range(5)]
    assert all(o.reservation for o in outs) and decide(limiter, cfg, who).decision.code == "quota_exceeded"
    limiter.settle(outs[0].reservation, False, int(T0 * 1000))  # upstream failed: the unit comes back
    again = decide(limiter, cfg, who)
    assert isinstance(again.decision, Allow) and again.decision.response_headers["X-Quota-Remaining"] == "0"
    assert limiter.settle(outs[1].reservation, True, int(T0 * 1000)) == (1,)
    assert limiter.settle(outs[1].reservation, True, int(T0 * 1000)) == (1,)  # idempotent
    for o in outs[2:]:
        limiter.settle(o.reservation, True, int(T0 * 1000))
    limiter.settle(again.reservation, True, int(T0 * 1000))
    assert decide(limiter, cfg, who).decision.headers["X-Quota-Remaining"] == "0"


def test_lapsed_reservation_is_charged_and_late_settles_change_nothing(limiter):
    """sv-quota-log dead or hung at log time: the reservation lapses and counts as charged (fail closed for billing);
    only a definite failure settled in time refunds, and that unit is available again at once."""
    cfg = quota_cfg(reservation_ttl=60)
    who = ident()
    first = [decide(limiter, cfg, who) for _ in range(5)]
    assert decide(limiter, cfg, who, now=T0 + 59).decision.code == "quota_exceeded"
    limiter.settle(first[0].reservation, False, int((T0 + 1) * 1000))  # a definite failure, settled in time
    refunded = decide(limiter, cfg, who, now=T0 + 2)
    assert isinstance(refunded.decision, Allow)  # the released unit is back at once
    late = decide(limiter, cfg, who, now=T0 + 61)  # the other four lapsed (log phase never ran): charged
    assert late.decision.code == "quota_exceeded"
    assert late.decision.headers["X-Quota-Remaining"] == "0"
    now_ms = int((T0 + 62) * 1000)
    assert limiter.settle(first[1].reservation, True, now_ms) == (4,)  # a late commit: charged once, at the lapse
    assert limiter.settle(first[2].reservation, False, now_ms) == (4,)  # a late release refunds nothing
    limiter.settle(refunded.reservation, True, now_ms)
    assert decide(limiter, cfg, who, now=T0 + 63).decision.code == "quota_exceeded"


def test_occasions_grants_and_child_limits(limiter, storage):
    cfg = quota_cfg(occasions=[{"date": "03-14", "extra": 2}])
    who = ident()
    assert decide(limiter, cfg, who).decision.response_headers["X-Quota-Limit"] == "7"
    first = decide(limiter, cfg, who)
    storage.grant(first.reservation.keys[0], 3)  # an admin grant: HINCRBY <counter> grant 3
    assert decide(limiter, cfg, who).decision.response_headers["X-Quota-Limit"] == "10"
    child = ident(sub="kid", daily_story_limit="1")
    out = decide(limiter, cfg, child)
    assert out.decision.response_headers["X-Quota-Remaining"] == "0" and len(out.reservation.keys) == 2
    assert decide(limiter, cfg, child).decision.code == "quota_exceeded"
    assert isinstance(decide(limiter, cfg, ident(sub="sibling")).decision, Allow)


def test_quota_methods_and_missing_identity(limiter):
    cfg = quota_cfg(methods=["post"])
    assert decide(limiter, cfg, ident(), method="GET").reservation is None
    assert decide(limiter, cfg, None).decision == Allow()  # no identity: sv-jwt's job, nothing to charge


def test_concurrent_story_creations_exactly_five(limiter):
    cfg = quota_cfg()
    who = ident(sub="busy", family="busy-fam")
    results, errors, barrier = [], [], threading.Barrier(200)

    def worker():
        barrier.wait()
        out = decide(limiter, cfg, who)
        results.append(out.decision)
        errors.append(out.error) if out.error else None

    threads = [threading.Thread(target=worker) for _ in range(200)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 200
    assert sum(isinstance(d, Allow) for d in results) == 5
    assert {d.code for d in results if isinstance(d, Deny)} == {"quota_exceeded"}, errors


# -- the Lua itself --------------------------------------------------------------------------------------------------
def test_lua_scripts_run_by_sha_and_survive_script_flush(redis_db):
    redis_db.flushdb()
    store = RedisStorage(lambda: redis_db, breaker_ms=0)
    cfg = quota_cfg()
    batch = build_batch(cfg, ident(), None, "POST", T0)
    assert store.decide(batch).allowed and store.calls == 1  # one EVALSHA for every limit of the request
    redis_db.script_flush()  # the script cache is volatile: the next call hits NOSCRIPT and reloads
    assert store.decide(build_batch(cfg, ident(), None, "POST", T0)).allowed
    assert redis_db.script_exists(store._scripts["decide"].sha) == [True]
    assert "redis.call('MGET'" in load_lua("decide.lua")
    hkey = batch.quota.counters[0].key
    fields = redis_db.hgetall(hkey)  # one hash per counter: used + a field per held unit (r:<rid> -> expiry ms)
    assert fields[b"used"] == b"0"
    assert fields[f"r:{batch.quota.rid}".encode()] == str(batch.quota.res_expiry_ms).encode()
    assert sum(f.startswith(b"r:") for f in fields) == 2
    assert (
        abs(redis_db.pttl(hkey) - (batch.quota.expire_at_ms - batch.now_ms)) < 5_000
    )  # relative to the injected clock


def test_local_rates_keep_their_memory_bounded():
    from storyverse_plugins.quota.limiter import LocalRates

    local = LocalRates(max_keys=2)
    cfg = parse_config({"policies": [{"name": "m", "limit": 1, "period": "minute"}]})
    for n in range(5):
        ident = {"sub": f"u{n}", "family_id": f"f{n}"}
        assert local.decide(build_batch(cfg, ident, None, None, T0))[0].allowed
    assert len(local._tat) <= 2
    newest = build_batch(cfg, {"sub": "u4", "family_id": "f4"}, None, None, T0 + 1)
    assert not local.decide(newest)[0].allowed  # the newest subject is still remembered


def test_a_lapsed_unit_settled_before_any_sweep_is_charged_even_on_release(limiter):
    """No decision ran since the reservation lapsed (its r:<rid> field is still there): a late release must not
    refund it (only a definite failure settled in time does), a late commit charges it once."""
    cfg = quota_cfg(reservation_ttl=60)
    who = ident(sub="late", family="late-fam")
    a, b, c = (decide(limiter, cfg, who) for _ in range(3))
    late_ms = int((T0 + 61) * 1000)
    assert limiter.settle(a.reservation, False, late_ms) == (1,)  # a release after the lapse: charged
    assert limiter.settle(b.reservation, True, late_ms) == (2,)
    assert limiter.settle(b.reservation, True, late_ms) == (2,)  # once
    assert limiter.settle(c.reservation, False, int((T0 + 59) * 1000)) == (2,)  # in time: refunded
    assert decide(limiter, cfg, who, now=T0 + 62).decision.response_headers["X-Quota-Remaining"] == "2"
