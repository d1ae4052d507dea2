"""Usage today on the family page (issue 20): sv-quota's counters in the real Redis of the test namespace, read in
one pipeline for the family pool and each child, in the family's local day; a lapsed reservation counts as used,
a held one shows as being written; another family's counters never show; Redis unreachable → the page renders
with "usage unavailable". Through the gateway with stories created by sv-quota: tests/e2e/test_parent_pages_chromium.py.
"""

from __future__ import annotations

import re
import types

import pytest
import redis
from auth_support import TEST_REDIS_URL
from storyverse_auth.pages import usage
from storyverse_auth.redis_topology import client_for
from storyverse_contracts.keys import child_key, family_key
from storyverse_plans import local_day
from test_auth_parent_pages import Pages


@pytest.fixture
def pages(app, family):
    app.config["EMAIL_VERIFICATION_REQUIRED"] = False
    return Pages(app.test_client(), family)


def _family_id(pages, tokens) -> str:
    body = pages.client.get("/api/auth/family", headers=pages.family.headers(tokens)).get_json()
    return str(body.get("id") or body["family_id"])


def _usage(page: str, element_id: str) -> str:
    match = re.search(rf'id="{re.escape(element_id)}"[^>]*>(.*?)</p>', page, re.S)
    assert match, element_id
    return " ".join(re.sub(r"<[^>]+>", "", match.group(1)).split())


def test_family_page_shows_todays_usage_of_the_family_and_each_child(pages, family, clock):
    parent = family.parent()
    robin, _ = family.active_child(parent, "robin")
    family.active_child(parent, "zoe", controls={"daily_story_limit": 3})
    fid = _family_id(pages, parent)
    day = local_day(clock(), "Europe/Paris").date  # the family's zone (AuthActions.register)
    now_ms = int(clock() * 1000)
    r = client_for(TEST_REDIS_URL)
    r.hset(family_key(fid, day), mapping={"used": 2, "r:lapsed": now_ms - 1000, "r:held": now_ms + 60_000})
    r.hset(child_key(fid, robin["id"], day), mapping={"used": 1, "grant": 2, "r:lapsed": now_ms - 1000})
    r.hset(family_key(fid, "2001-01-01"), "used", 4)  # another day: not today's count
    pages.sign_in()
    page = pages.client.get("/parent/family").get_data(as_text=True)
    assert _usage(page, "usage-family") == "Family: 3 of 5 stories used today, 1 being written"
    assert _usage(page, f"usage-{robin['id']}") == "Robin: 2 of 5 stories used today (+2 extra today)"
    zoe = next(k for k in re.findall(r'id="usage-([0-9a-f-]{36})"', page) if k != robin["id"])
    assert _usage(page, f"usage-{zoe}") == "Zoe: 0 of 3 stories used today"  # her own limit


def test_another_familys_counters_never_show(pages, family, auth, clock):
    mine = family.parent()
    theirs = auth.tokens("other@example.com")
    day = local_day(clock(), "Europe/Paris").date
    client_for(TEST_REDIS_URL).hset(family_key(_family_id(pages, theirs), day), "used", 4)
    pages.sign_in()
    page = pages.client.get("/parent/family").get_data(as_text=True)
    assert _family_id(pages, mine) != _family_id(pages, theirs)
    assert _usage(page, "usage-family") == "Family: 0 of 5 stories used today"


def test_redis_unreachable_renders_the_page_with_usage_unavailable(pages, family, monkeypatch):
    parent = family.parent()
    child, _ = family.active_child(parent)
    pages.sign_in()  # the page session lives in the real Redis; only the counter read fails below
    dead = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5)
    monkeypatch.setattr(usage, "redis_store", types.SimpleNamespace(client=dead))
    response = pages.client.get("/parent/family")
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert _usage(page, "usage-family") == "Family: usage unavailable"
    assert _usage(page, f"usage-{child['id']}") == "Robin: usage unavailable"
    assert "Robin" in page
