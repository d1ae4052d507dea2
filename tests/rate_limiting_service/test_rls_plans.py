"""One source for plans and the quota keys: the sv-quota plugin, the generated kong.yml and the rate limiting service
all see storyverse_plans; the service's key layout is the plugin's. Pure: no Redis, no database."""

from __future__ import annotations

import datetime as dt

import pytest
import yaml
from rls_support import REPO
from storyverse_contracts import keys
from storyverse_plans import DEFAULT_PLANS, Occasion, Plan, daily_limit, local_day, plan_for
from storyverse_plugins.quota import tiers


def test_the_plugin_uses_the_shared_plans():
    assert tiers.Plan is Plan and tiers.DEFAULT_PLANS is DEFAULT_PLANS and tiers.local_day is local_day
    assert [(p.tier, p.daily, p.rate_burst) for p in DEFAULT_PLANS] == [
        ("basic", 5, 0),
        ("premium", 20, 5),
        ("partner-basic", 100, 5),
        ("partner-premium", 1000, 20),
    ]


def test_kong_yml_carries_the_shared_plans_on_every_quota_route():
    config = yaml.safe_load((REPO / "kong.yml").read_text())
    routes = [r for s in config["services"] for r in s.get("routes", [])]
    plugins = [p for r in routes for p in r.get("plugins", []) if p["name"] == "sv-quota"]
    charged = [p for p in plugins if p["config"].get("quota", {}).get("enabled")]
    assert charged
    for plugin in charged:
        assert plugin["config"]["plans"] == [p.as_config() for p in DEFAULT_PLANS]


def test_unknown_tiers_get_the_basic_plan_never_more():
    assert plan_for("premium").daily == 20
    assert plan_for("platinum").daily == plan_for(None).daily == 5


@pytest.mark.parametrize(
    ("date", "extra", "valid"),
    [("12-24", 3, True), ("2026-12-24", 1, True), ("12-24", 0, False), ("xmas", 2, False), ("2026-1-2", 1, False)],
)
def test_occasion_dates(date, extra, valid):
    assert Occasion(date, extra).valid is valid


def test_occasions_add_to_the_plan_on_their_local_date():
    occasions = (Occasion("12-24", 3), Occasion("2026-12-24", 2))
    assert daily_limit(plan_for("basic"), occasions, "2026-12-24") == 10
    assert daily_limit(plan_for("basic"), occasions, "2027-12-24") == 8
    assert daily_limit(plan_for("basic"), occasions, "2026-12-25") == 5


def test_the_day_ends_at_local_midnight():
    # 23:30 UTC on 1 March is already 2 March in Tokyo (UTC+9), and still 1 March in Los Angeles
    now = dt.datetime(2026, 3, 1, 23, 30, tzinfo=dt.UTC).timestamp()
    tokyo, la = local_day(now, "Asia/Tokyo"), local_day(now, "America/Los_Angeles")
    assert (tokyo.date, la.date) == ("2026-03-02", "2026-03-01")
    assert dt.datetime.fromtimestamp(la.reset_s, dt.UTC) == dt.datetime(2026, 3, 2, 8, 0, tzinfo=dt.UTC)
    assert local_day(now, "Not/AZone").date == "2026-03-01"  # a bad tz claim falls back to UTC


def test_the_counter_keys_keep_their_format():
    """sv-quota writes and the service reads these keys with the same builders (storyverse_contracts.keys); the
    formats are stable across releases (a gateway and a service of different versions run side by side)."""
    tag = keys.subject_tag({"family_id": "fam-1"}, None)
    assert tag == "{f:fam-1}"
    for scope in ("fam", "u:acc-1", "c:kid-1"):
        assert keys.quota_key(tag, scope, "2026-12-24") == f"sv:quota:v1:{{f:fam-1}}:q:{scope}:2026-12-24"
    counter = keys.family_key("fam-1", "2026-12-24")
    assert counter == keys.quota_key(tag, "fam", "2026-12-24")
    assert keys.RESERVATION == "r:"  # a counter's field per held unit: r:<rid> -> expiry ms
    assert keys.block_key("sv:quota:v1:{ip:1.2.3.4}:ab") == "sv:quota:v1:{ip:1.2.3.4}:blk"
    assert keys.block_key(keys.abuse_key("{f:f1}", "u1")) == "sv:quota:v1:{f:f1}:blk:u:u1"
    assert keys.user_key("fam-1", "acc-1", "2026-12-24") == keys.quota_key(tag, "u:acc-1", "2026-12-24")
    assert keys.child_key("f{x}", "k", "2026-01-01") == "sv:quota:v1:{f:f_x_}:q:c:k:2026-01-01"  # braces cleaned
    assert keys.BLOCKS_INDEX == "sv:quota:v1:{abuse}:blocks" and keys.OCCASIONS == "sv:quota:v1:{plans}:occasions"


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("sv:quota:v1:{f:F1}:q:fam:2026-12-24", ("F1", "family", "")),
        ("sv:quota:v1:{f:F1}:q:c:K1:2026-12-24", ("F1", "child", "K1")),
        ("sv:quota:v1:{u:U1}:q:u:U1:2026-12-24", ("", "user", "U1")),
        ("sv:quota:v1:{f:F1}:q:fam:2026-12-24:res", None),  # the old reservations zset: not a counter
        ("sv:quota:v1:{f:F1}:q:fam:2026-13-40", None),
        ("sv:quota:v1:{ip:1.2.3.4}:ab", None),
    ],
)
def test_counter_keys_parse(key, expected):
    parsed = keys.parse_counter(key)
    assert (parsed and (parsed.family_id, parsed.scope, parsed.subject)) == expected


def test_the_directory_reads_columns_the_auth_models_have():
    from storyverse_auth.models import Account, Family
    from storyverse_ratelimit.directory import accounts, families
    from storyverse_ratelimit.models import UsageDaily

    assert {c.name for c in families.columns} <= set(Family.__table__.columns.keys())
    assert {c.name for c in accounts.columns} <= set(Account.__table__.columns.keys())
    assert set(UsageDaily.metadata.tables) == {"usage_daily"}  # init-db never creates the auth service's tables


def test_a_route_naming_an_unknown_role_fails_at_import():
    from storyverse_ratelimit.security import requires

    with pytest.raises(ValueError, match="unknown roles"):
        requires("admn")
    assert callable(requires("admin", "parent"))
