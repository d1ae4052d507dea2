"""The usage pipeline and the gauges against real PostgreSQL and Redis: counters upserted idempotently, special
occasions reaching the counters sv-quota reads, cluster-wide gauges on /metrics, and the periodic thread."""

from __future__ import annotations

import re
import time

import pytest
from rls_support import add_account, add_family
from sqlalchemy import select
from storyverse_contracts.keys import BLOCKS_INDEX, OCCASIONS, child_key, family_key, user_key


@pytest.fixture
def sync(app):
    from storyverse_ratelimit.sync import sync_usage

    def run():
        with app.app_context():
            return sync_usage()

    return run


def rows(app) -> dict[tuple[str, str, str], tuple[int, int]]:
    from storyverse_ratelimit.extensions import db
    from storyverse_ratelimit.models import UsageDaily

    with app.app_context():
        found = db.session.scalars(select(UsageDaily)).all()
        return {(r.family_id, r.scope, r.subject): (r.stories_used, r.grants) for r in found}


def test_counters_become_rows_idempotently_and_never_lower(app, rdb, sync):
    day = "2026-12-24"
    rdb.hset(family_key("F1", day), mapping={"used": 4, "grant": 1})
    rdb.hset(child_key("F1", "K1", day), mapping={"used": 2})
    rdb.hset(user_key("F2", "U2", day), mapping={"used": 1})
    rdb.hset(family_key("F1", day), "r:lapsed", 1)  # a held unit that lapsed unswept (sv-quota-log died): charged
    rdb.hset(child_key("F1", "K1", day), "r:live", int(time.time() * 1000) + 60_000)  # in flight: not yet used
    result = sync()
    assert (result.counters, result.rows) == (3, 3)
    expected = {("F1", "family", ""): (5, 1), ("F1", "child", "K1"): (2, 0), ("F2", "user", "U2"): (1, 0)}
    assert rows(app) == expected
    assert sync().counters == 3 and rows(app) == expected  # twice: same figures
    rdb.delete(family_key("F1", day))  # Redis lost a counter: the row keeps what was billed
    rdb.hset(child_key("F1", "K1", day), "used", 3)
    sync()
    assert rows(app)[("F1", "family", "")] == (5, 1) and rows(app)[("F1", "child", "K1")] == (3, 0)


def test_occasions_reach_the_plan_counters_once_and_follow_edits(app, rdb, sync):
    day = "2026-12-24"
    pool, own = family_key("F1", day), child_key("F1", "K1", day)
    rdb.hset(pool, mapping={"used": 5, "grant": 2})  # 2 granted by an admin
    rdb.hset(own, mapping={"used": 3})
    rdb.hset(OCCASIONS, "12-24", 3)
    assert sync().occasions_applied == 1
    assert rdb.hmget(pool, "grant", "occ") == ["5", "3"] and rdb.hget(own, "grant") is None  # a child's own: parent's
    assert sync().occasions_applied == 0 and rdb.hget(pool, "grant") == "5"  # idempotent
    rdb.hset(OCCASIONS, "12-24", 1)
    sync()
    assert rdb.hmget(pool, "grant", "occ") == ["3", "1"]  # edited: the admin's 2 stay
    rdb.hdel(OCCASIONS, "12-24")
    sync()
    assert rdb.hmget(pool, "grant", "occ") == ["2", "0"]
    assert rows(app)[("F1", "family", "")] == (5, 5)  # billed rows keep the highest grant seen


def _sample(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} ([0-9.e+-]+)$", text, re.M)
    assert match, f"{name} not in /metrics"
    return float(match.group(1))


def test_gauges_are_cluster_wide_figures_from_redis(app, client, rdb, pg, sync):
    from storyverse_plans import local_day

    basic, premium = add_family(pg, "basic"), add_family(pg, "premium")
    add_account(pg, basic, "parent")
    day = local_day(time.time(), "UTC").date
    rdb.hset(family_key(basic, day), mapping={"used": 5})  # at its limit: throttled until midnight
    rdb.hset(family_key(premium, day), mapping={"used": 5})  # a quarter of 20
    rdb.hset(family_key(premium, "2000-01-01"), mapping={"used": 20})  # an old day of the same family: ignored
    until = int(time.time() * 1000) + 60_000
    for key, kind, reason in (("sv:quota:v1:{ip:198.51.100.7}:ab", "ip", "credential_stuffing"),
                              ("sv:quota:v1:{f:x}:ab:u:acc", "account", "strikes")):  # fmt: skip
        rdb.hset(key, mapping={"until": until, "kind": kind, "subject": "s", "reason": reason, "level": 1})
        rdb.zadd(BLOCKS_INDEX, {key: until})
    sync()
    text = client.get("/metrics").get_data(as_text=True)
    assert _sample(text, 'sv_ratelimit_throttled_subjects{reason="quota_exhausted"}') == 1
    assert _sample(text, 'sv_ratelimit_throttled_subjects{reason="abuse_block"}') == 2
    assert _sample(text, 'sv_ratelimit_quota_utilisation_ratio{stat="max"}') == 1.0
    assert _sample(text, 'sv_ratelimit_quota_utilisation_ratio{stat="mean"}') == pytest.approx(0.625)
    assert _sample(text, "sv_ratelimit_quota_pools") == 2
    assert _sample(text, "sv_ratelimit_quota_stories_used") == 10
    assert _sample(text, 'sv_ratelimit_abuse_blocks_active{kind="ip",reason="credential_stuffing"}') == 1
    assert _sample(text, 'sv_ratelimit_abuse_blocks_active{kind="account",reason="strikes"}') == 1
    assert _sample(text, "sv_ratelimit_redis_up") == 1


def test_metrics_say_so_when_redis_is_down(app):
    from storyverse_ratelimit.extensions import redis_store

    app.config["REDIS_URL"] = "redis://127.0.0.1:1/0"
    redis_store.init_app(app)
    try:
        resp = app.test_client().get("/metrics")
        assert resp.status_code == 200 and _sample(resp.get_data(as_text=True), "sv_ratelimit_redis_up") == 0
    finally:
        app.config["REDIS_URL"] = "redis://127.0.0.1:6379/13"
        redis_store.init_app(app)


def test_the_periodic_thread_syncs_without_a_command_and_one_pod_wins(app, rdb):
    from storyverse_ratelimit.sync import start_periodic_sync, sync_if_due

    rdb.hset(family_key("F9", "2026-12-24"), mapping={"used": 1})
    thread = start_periodic_sync(app, 1)
    try:
        deadline = time.monotonic() + 10
        while ("F9", "family", "") not in rows(app) and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        thread.stop.set()
        thread.join(5)
    assert rows(app)[("F9", "family", "")] == (1, 0)
    rdb.delete("sv:ratelimit:v1:usage-sync:lock")
    assert sync_if_due(app, 60) is not None and sync_if_due(app, 60) is None  # the lock elects one run per interval


def test_init_db_creates_the_table_on_an_empty_database():
    import subprocess
    import sys

    from rls_support import recreate_database

    url = recreate_database("storyverse_rls_initdb_test")
    env = {"DATABASE_URL": url, "REDIS_URL": "redis://127.0.0.1:6379/13", "PATH": "/usr/bin:/bin"}
    for _ in range(2):  # idempotent
        proc = subprocess.run([sys.executable, "-m", "storyverse_ratelimit.cli", "init-db"], env=env,
                              capture_output=True, text=True, timeout=60)  # fmt: skip
        assert proc.returncode == 0, proc.stderr
    from sqlalchemy import create_engine, inspect

    engine = create_engine(url)
    try:
        assert inspect(engine).get_table_names() == ["usage_daily"]
        assert [i["name"] for i in inspect(engine).get_indexes("usage_daily")] == ["ix_usage_daily_day"]
    finally:
        engine.dispose()


def test_the_service_reads_the_plugins_counters_and_charges_a_lapsed_unit(rdb):
    """The layout contract, driven by sv-quota's own script: held units are in flight, and one that lapsed before
    any decision swept it (sv-quota-log dead at log time) is already used in the service's view (issue 16)."""
    from storyverse_plugins.common.redis_pool import RedisSettings, build_client
    from storyverse_plugins.quota.policy import build_batch
    from storyverse_plugins.quota.schema import parse_config
    from storyverse_plugins.quota.storage import RedisStorage
    from storyverse_ratelimit import counters

    plugin = RedisStorage(lambda: build_client(RedisSettings(db=rdb.connection_pool.connection_kwargs["db"])))
    cfg = parse_config({"quota": {"enabled": True, "reservation_ttl": 60}})
    who = {"sub": "P1", "family_id": "FLAPSE", "tier": "basic", "tz": "UTC"}
    now = time.time()
    batches = [build_batch(cfg, who, None, "POST", now) for _ in range(2)]
    assert all(plugin.decide(b).reserved for b in batches)
    key = batches[0].quota.counters[0].key
    (held,) = counters.read(rdb, [key], now_ms=int(now * 1000) + 1_000)
    assert (held.used, held.in_flight) == (0, 2)
    (lapsed,) = counters.read(rdb, [key], now_ms=int(now * 1000) + 61_000)  # unswept: nothing ran since
    assert (lapsed.used, lapsed.in_flight) == (2, 0)
