"""Usage analytics: sv-quota's daily counters (Redis) copied into usage_daily (PostgreSQL), idempotently.

Counters are written with the plugin package's own key builder, as sv-quota writes them."""

import datetime as dt
import uuid

import pytest
import redis
from auth_support import TEST_REDIS_URL
from sqlalchemy import select, text
from storyverse_auth.extensions import db
from storyverse_auth.usage import counters
from storyverse_auth.usage.models import UsageDaily
from storyverse_auth.usage.sync import sync_if_due, sync_usage
from storyverse_plugins.common import keys as plugin_keys

FAMILY = str(uuid.uuid4())
CHILD = str(uuid.uuid4())
DAY = "2026-11-26"


@pytest.fixture(autouse=True)
def clean_usage(app):
    with app.app_context():
        db.session.execute(text("TRUNCATE usage_daily"))
        db.session.commit()


@pytest.fixture
def r():
    return redis.Redis.from_url(TEST_REDIS_URL, decode_responses=True)


def counter(r, tag: str, scope: str, day: str = DAY, used: int = 0, grant: int = 0) -> str:
    key = plugin_keys.quota_key(tag, scope, day)
    r.hset(key, mapping={"used": used, "grant": grant})
    return key


def rows(app) -> dict:
    with app.app_context():
        found = db.session.scalars(select(UsageDaily)).all()
        return {(u.family_id, u.scope, u.subject, u.day.isoformat()): (u.stories_used, u.grants) for u in found}


def test_key_builders_match_the_plugin():
    tag = plugin_keys.subject_tag({"family_id": FAMILY, "sub": CHILD}, None)
    assert counters.family_tag(FAMILY) == tag
    assert counters.family_key(FAMILY, DAY) == plugin_keys.quota_key(tag, "fam", DAY)
    assert counters.child_key(FAMILY, CHILD, DAY) == plugin_keys.quota_key(tag, "c:" + CHILD, DAY)
    assert counters.user_key(FAMILY, CHILD, DAY) == plugin_keys.quota_key(tag, "u:" + CHILD, DAY)


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        (f"sv:quota:v1:{{f:{FAMILY}}}:q:fam:{DAY}", (FAMILY, "family", "")),
        (f"sv:quota:v1:{{f:{FAMILY}}}:q:c:{CHILD}:{DAY}", (FAMILY, "child", CHILD)),
        (f"sv:quota:v1:{{f:{FAMILY}}}:q:u:{CHILD}:{DAY}", (FAMILY, "user", CHILD)),
        (f"sv:quota:v1:{{u:{CHILD}}}:q:u:{CHILD}:{DAY}", ("", "user", CHILD)),
        (f"sv:quota:v1:{{f:{FAMILY}}}:q:fam:{DAY}:res", None),  # reservations
        (f"sv:quota:v1:{{f:{FAMILY}}}:rl:stories:u:{CHILD}", None),  # a rate key
        (f"sv:quota:v1:{{f:{FAMILY}}}:ab:u:{CHILD}", None),  # abuse state
        (f"sv:quota:v1:{{f:{FAMILY}}}:q:fam:2026-13-40", None),  # not a date
        (f"sv:quota:v1:{{f:{FAMILY}}}:q:x:{CHILD}:{DAY}", None),  # unknown scope
    ],
)
def test_parse_key(key, expected):
    parsed = counters.parse_key(key)
    assert (None if parsed is None else (parsed.family_id, parsed.scope, parsed.subject)) == expected
    if parsed is not None:
        assert parsed.day == dt.date(2026, 11, 26)


def test_sync_upserts_every_counter_and_skips_other_keys(app, r):
    tag = counters.family_tag(FAMILY)
    fam = counter(r, tag, "fam", used=3, grant=2)
    counter(r, tag, "c:" + CHILD, used=2)
    counter(r, "{u:" + CHILD + "}", "u:" + CHILD, day="2026-11-25", used=1)
    r.zadd(plugin_keys.reservations_key(fam), {"rid1": 10**13})
    r.set(plugin_keys.rate_key(tag, "stories", CHILD), "123")
    r.hset(plugin_keys.abuse_key(tag, CHILD), mapping={"until": 1})
    with app.app_context():
        result = sync_usage(batch=2)  # several batches
    assert (result.counters, result.rows) == (3, 3)
    assert rows(app) == {
        (FAMILY, "family", "", DAY): (3, 2),
        (FAMILY, "child", CHILD, DAY): (2, 0),
        ("", "user", CHILD, "2026-11-25"): (1, 0),
    }


def test_sync_is_idempotent_and_never_goes_backwards(app, r):
    tag = counters.family_tag(FAMILY)
    key = counter(r, tag, "fam", used=2, grant=1)
    with app.app_context():
        sync_usage()
        sync_usage()
    assert rows(app) == {(FAMILY, "family", "", DAY): (2, 1)}
    r.hincrby(key, "used", 2)
    with app.app_context():
        sync_usage()
    assert rows(app)[(FAMILY, "family", "", DAY)] == (4, 1)
    # Redis lost the counter and sv-quota recreated it lower: the billed figure stays.
    r.delete(key)
    counter(r, tag, "fam", used=1)
    with app.app_context():
        sync_usage()
    assert rows(app)[(FAMILY, "family", "", DAY)] == (4, 1)


def test_sync_command(app, runner, r):
    counter(r, counters.family_tag(FAMILY), "fam", used=5)
    result = runner.invoke(args=["usage", "sync"])
    assert result.exit_code == 0, result.output
    assert "counters=1 rows=1" in result.output
    assert rows(app) == {(FAMILY, "family", "", DAY): (5, 0)}


def test_periodic_sync_runs_once_per_interval_across_workers(app, r):
    counter(r, counters.family_tag(FAMILY), "fam", used=1)
    first = sync_if_due(app, 60)
    second = sync_if_due(app, 60)  # another worker inside the interval
    assert first is not None and first.counters == 1
    assert second is None
