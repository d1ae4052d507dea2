"""sv-rbac policy core: pure decisions from claims + compiled route rules + request facts + an injected clock."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from storyverse_plugins.common.decision import Allow, Deny
from storyverse_plugins.rbac.policy import Facts, MethodSet, Needs, Policy, read_caller
from storyverse_plugins.rbac.schema import parse_config

NY, TOKYO = "America/New_York", "Asia/Tokyo"

PARENT_A = {
    "sub": "p-a",
    "role": "parent",
    "family_id": "fam-a",
    "tier": "basic",
    "tz": NY,
    "children": ["c-a1", "c-a2"],
}
CO_PARENT_A = {**PARENT_A, "sub": "p-a2"}
PARENT_B = {"sub": "p-b", "role": "parent", "family_id": "fam-b", "tier": "premium", "tz": TOKYO, "children": ["c-b1"]}
CHILD_A1 = {
    "sub": "c-a1",
    "role": "child",
    "family_id": "fam-a",
    "tier": "basic",
    "tz": NY,
    "age_band": "6-9",
    "content_rating": "TV-Y7",
    "allowed_hours": "07:00-19:30",
    "features": ["text", "image"],
}
CHILD_B1 = {**CHILD_A1, "sub": "c-b1", "family_id": "fam-b", "tz": TOKYO}
ADMIN = {"sub": "adm-1", "role": "admin", "family_id": "staff", "tier": "premium"}

STORIES = {
    "rules": [
        {"methods": ["GET", "POST"], "roles": ["parent", "child"]},
        {"methods": ["PUT", "PATCH", "DELETE"], "roles": ["parent"]},
    ]
}
CHILD_ROUTE = {
    "rules": [{"roles": ["parent"]}],
    "owned_captures": [{"name": "child_id", "kind": "child"}],
}


def at(tz: str, hhmm: str, day: str = "2025-01-15") -> float:
    """A Unix time: this wall-clock time on this day in tz."""
    local = dt.datetime.fromisoformat(f"{day}T{hhmm}:00").replace(tzinfo=ZoneInfo(tz))
    return local.timestamp()


NOON_NY = at(NY, "12:00")


def compile_(**raw) -> Policy:
    return Policy.compile(parse_config(raw))


def decide(raw: dict, identity, method: str | None = "GET", captures=None, now: float = NOON_NY, route=None):
    return compile_(**raw).decide(identity, Facts(method, route, captures), now)


def code(decision) -> str | None:
    return decision.code if isinstance(decision, Deny) else None


# --- identity ---------------------------------------------------------------------------------------------------------


def test_no_identity_on_a_private_route_is_a_401_with_a_challenge():
    d = decide(STORIES, None)
    assert isinstance(d, Deny) and (d.status, d.code) == (401, "unauthenticated")
    assert d.headers == {"WWW-Authenticate": 'Bearer realm="storyverse"'}


@pytest.mark.parametrize("empty", [None, [], {}])
def test_a_public_route_lets_anonymous_callers_through(empty):
    assert decide({"public": True}, empty) == Allow()


def test_a_public_route_with_rules_still_checks_identified_callers():
    raw = {"public": True, "rules": [{"roles": ["parent"]}]}
    assert decide(raw, None) == Allow()
    assert code(decide(raw, CHILD_A1)) == "forbidden_role"
    assert decide(raw, PARENT_A) == Allow()


@pytest.mark.parametrize(
    "identity",
    [
        "parent",
        42,
        ["sub"],
        {"role": "parent", "family_id": "fam-a"},
        {"sub": "", "role": "parent", "family_id": "fam-a"},
        {"sub": "p", "role": "superuser", "family_id": "fam-a"},
        {"sub": "p", "role": "parent"},
        {"sub": "p", "role": "parent", "family_id": 7},
        {"sub": ["p"], "role": "parent", "family_id": "fam-a"},
        {"sub": "p" * 500, "role": "parent", "family_id": "fam-a"},
    ],
)
def test_a_malformed_identity_is_refused_even_on_public_routes(identity):
    for raw in (STORIES, {"public": True}):
        d = decide(raw, identity)
        assert isinstance(d, Deny) and (d.status, d.code) == (401, "invalid_identity")
    assert read_caller(identity) is None


# --- role x method matrix ---------------------------------------------------------------------------------------------

ALLOWED = {
    "parent": {"GET", "POST", "PUT", "PATCH", "DELETE"},
    "child": {"GET", "POST"},
    "admin": set(),
}


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"])
@pytest.mark.parametrize(("identity", "role"), [(PARENT_A, "parent"), (CHILD_A1, "child"), (ADMIN, "admin")])
def test_role_by_method_matrix(identity, role, method):
    d = decide(STORIES, identity, method)
    if method in ALLOWED[role]:
        assert isinstance(d, Allow)
    else:
        assert (d.status, d.code) == (403, "forbidden_role")
        assert role in d.detail and method in d.detail


def test_lower_case_methods_are_read_as_upper_case():
    assert code(decide(STORIES, CHILD_A1, "delete")) == "forbidden_role"
    assert code(decide({"rules": [{"roles": ["parent", "child"]}]}, CHILD_A1, "delete")) == "child_method_restricted"


def test_first_matching_rule_wins_and_catch_all_covers_the_rest():
    raw = {"rules": [{"methods": ["DELETE"], "roles": ["admin"]}, {"roles": ["parent", "admin"]}]}
    assert code(decide(raw, PARENT_A, "DELETE")) == "forbidden_role"
    assert isinstance(decide(raw, PARENT_A, "PATCH"), Allow)
    assert isinstance(decide(raw, ADMIN, "DELETE"), Allow)


def test_children_never_delete_even_when_a_rule_lets_them():
    raw = {"rules": [{"roles": ["parent", "child"]}]}
    d = decide(raw, CHILD_A1, "DELETE")
    assert (d.status, d.code) == (403, "child_method_restricted")
    assert isinstance(decide(raw, CHILD_A1, "PUT"), Allow)
    assert isinstance(decide({**raw, "child_denied_methods": []}, CHILD_A1, "DELETE"), Allow)


def test_an_unread_method_is_allowed_only_when_every_candidate_is():
    p = compile_(**STORIES)
    assert isinstance(p.decide(PARENT_A, Facts(None, frozenset({"GET", "DELETE"})), NOON_NY), Allow)
    assert code(p.decide(CHILD_A1, Facts(None, frozenset({"GET", "DELETE"})), NOON_NY)) == "forbidden_role"
    assert code(p.decide(PARENT_A, Facts(None, None), NOON_NY)) == "forbidden_role"  # any method: OPTIONS too
    assert isinstance(p.decide(CHILD_A1, Facts(None, frozenset({"GET", "POST"})), NOON_NY), Allow)


def test_admin_override_skips_every_check_but_only_when_configured():
    raw = {**CHILD_ROUTE, "admin_override": True}
    assert decide(raw, ADMIN, "DELETE", {"child_id": "c-b1"}) == Allow()
    assert code(decide(CHILD_ROUTE, ADMIN, "GET", {"child_id": "c-b1"})) == "forbidden_role"


# --- ownership --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("identity", "child_id", "expected"),
    [
        (PARENT_A, "c-a1", None),
        (PARENT_A, "c-a2", None),
        (CO_PARENT_A, "c-a1", None),
        (PARENT_A, "c-b1", "forbidden_family"),
        (PARENT_B, "c-a1", "forbidden_family"),
        (PARENT_B, "c-b1", None),
        (PARENT_A, "p-a", "forbidden_family"),  # a parent is not a child of its own
        (PARENT_A, "", "forbidden_family"),
        (CHILD_A1, "c-a1", "forbidden_role"),  # parent-only route: the role check comes first
    ],
)
def test_child_ids_must_be_in_the_parents_children_claim(identity, child_id, expected):
    assert code(decide(CHILD_ROUTE, identity, "GET", {"child_id": child_id})) == expected


@pytest.mark.parametrize(
    ("children", "expected"),
    [(None, "forbidden_family"), ("c-a1", "forbidden_family"), ({"c-a1": 1}, "forbidden_family"), (["c-a1"], None)],
)
def test_a_missing_or_garbage_children_claim_owns_nothing(children, expected):
    parent = {**PARENT_A, "children": children}
    assert code(decide(CHILD_ROUTE, parent, "GET", {"child_id": "c-a1"})) == expected


def test_a_child_may_only_name_itself():
    raw = {"rules": [{"roles": ["parent", "child"]}], "owned_captures": [{"name": "child_id", "kind": "child"}]}
    assert isinstance(decide(raw, CHILD_A1, "GET", {"child_id": "c-a1"}), Allow)
    assert code(decide(raw, CHILD_A1, "GET", {"child_id": "c-a2"})) == "forbidden_family"  # a sibling
    assert code(decide(raw, CHILD_A1, "GET", {"child_id": "c-b1"})) == "forbidden_family"
    assert code(decide(raw, CHILD_A1, "GET", {"child_id": "p-a"})) == "forbidden_family"


@pytest.mark.parametrize(
    ("identity", "family_id", "expected"),
    [
        (PARENT_A, "fam-a", None),
        (CHILD_A1, "fam-a", None),
        (PARENT_A, "fam-b", "forbidden_family"),
        (CHILD_B1, "fam-a", "forbidden_family"),
        (PARENT_A, "FAM-A", "forbidden_family"),
        (PARENT_A, ["fam-a"], "forbidden_family"),
    ],
)
def test_family_ids_must_equal_the_family_claim(identity, family_id, expected):
    raw = {"rules": [{"roles": ["parent", "child"]}], "owned_captures": [{"name": "family_id", "kind": "family"}]}
    assert code(decide(raw, identity, "GET", {"family_id": family_id})) == expected


@pytest.mark.parametrize(
    ("identity", "account_id", "expected"),
    [
        (PARENT_A, "p-a", None),
        (PARENT_A, "c-a1", None),
        (PARENT_A, "p-a2", "forbidden_family"),  # co-parents are not in the token
        (PARENT_A, "c-b1", "forbidden_family"),
        (CHILD_A1, "c-a1", None),
        (CHILD_A1, "p-a", "forbidden_family"),
        (ADMIN, "adm-1", None),
        (ADMIN, "p-a", "forbidden_family"),
    ],
)
def test_account_ids_are_the_caller_or_its_children(identity, account_id, expected):
    raw = {
        "rules": [{"roles": ["parent", "child", "admin"]}],
        "owned_captures": [{"name": "account_id", "kind": "account"}],
    }
    assert code(decide(raw, identity, "GET", {"account_id": account_id})) == expected


def test_every_owned_capture_is_checked():
    raw = {
        "rules": [{"roles": ["parent"]}],
        "owned_captures": [{"name": "family_id", "kind": "family"}, {"name": "child_id", "kind": "child"}],
    }
    assert isinstance(decide(raw, PARENT_A, "GET", {"family_id": "fam-a", "child_id": "c-a1"}), Allow)
    assert code(decide(raw, PARENT_A, "GET", {"family_id": "fam-a", "child_id": "c-b1"})) == "forbidden_family"
    assert code(decide(raw, PARENT_A, "GET", {"family_id": "fam-b", "child_id": "c-a1"})) == "forbidden_family"


def test_a_missing_capture_is_a_500_unless_optional():
    d = decide(CHILD_ROUTE, PARENT_A, "GET", {})
    assert (d.status, d.code) == (500, "rbac_misconfigured")
    assert code(decide(CHILD_ROUTE, PARENT_A, "GET", None)) == "rbac_misconfigured"
    optional = {**CHILD_ROUTE, "owned_captures": [{"name": "child_id", "kind": "child", "optional": True}]}
    assert isinstance(decide(optional, PARENT_A, "GET", {}), Allow)
    assert code(decide(optional, PARENT_A, "GET", {"child_id": "c-b1"})) == "forbidden_family"


# --- allowed hours ----------------------------------------------------------------------------------------------------

OPEN = {"rules": [{"roles": ["parent", "child"]}]}


@pytest.mark.parametrize("tz", [NY, TOKYO])
@pytest.mark.parametrize(
    ("window", "local", "allowed"),
    [
        ("07:00-19:30", "06:59", False),
        ("07:00-19:30", "07:00", True),
        ("07:00-19:30", "12:00", True),
        ("07:00-19:30", "19:29", True),
        ("07:00-19:30", "19:30", False),
        ("07:00-19:30", "23:00", False),
        ("19:00-07:00", "18:59", False),
        ("19:00-07:00", "19:00", True),
        ("19:00-07:00", "23:59", True),
        ("19:00-07:00", "00:00", True),
        ("19:00-07:00", "06:59", True),
        ("19:00-07:00", "07:00", False),
        ("19:00-07:00", "12:00", False),
        ("00:00-24:00", "00:00", True),
        ("00:00-24:00", "23:59", True),
        (["06:00-08:00", "16:00-19:00"], "07:00", True),
        (["06:00-08:00", "16:00-19:00"], "12:00", False),
        (["06:00-08:00", "16:00-19:00"], "18:00", True),
    ],
)
def test_allowed_hours_in_the_family_time_zone(tz, window, local, allowed):
    child = {**CHILD_A1, "tz": tz, "allowed_hours": window}
    d = decide(OPEN, child, now=at(tz, local))
    assert isinstance(d, Allow) if allowed else code(d) == "outside_allowed_hours"


def test_the_same_instant_is_judged_in_each_familys_own_zone():
    instant = at(NY, "20:00")  # 20:00 in New York is 10:00 the next morning in Tokyo
    assert code(decide(OPEN, {**CHILD_A1, "tz": NY}, now=instant)) == "outside_allowed_hours"
    assert isinstance(decide(OPEN, {**CHILD_A1, "tz": TOKYO}, now=instant), Allow)


def test_hours_follow_daylight_saving_time():
    summer = at(NY, "19:15", "2025-07-15")
    assert isinstance(decide(OPEN, CHILD_A1, now=summer), Allow)
    assert code(decide(OPEN, CHILD_A1, now=summer + 30 * 60)) == "outside_allowed_hours"


def test_parents_have_no_bedtime_and_hours_can_be_switched_off():
    late = at(NY, "23:00")
    assert isinstance(decide(OPEN, PARENT_A, now=late), Allow)
    assert isinstance(decide({**OPEN, "enforce_hours": False}, CHILD_A1, now=late), Allow)


@pytest.mark.parametrize(
    "claims",
    [
        {"allowed_hours": None},
        {"allowed_hours": "7-19"},
        {"allowed_hours": "07:00-07:00"},
        {"allowed_hours": "25:00-07:00"},
        {"allowed_hours": "24:00-07:00"},
        {"allowed_hours": "24:30-23:00"},
        {"allowed_hours": 700},
        {"allowed_hours": []},
        {"allowed_hours": ["07:00-08:00"] * 9},
        {"tz": None},
        {"tz": "Mars/Olympus"},
        {"tz": "../../etc/passwd"},
        {"tz": 5},
    ],
)
def test_unreadable_hours_or_zone_refuse_the_child(claims):
    d = decide(OPEN, {**CHILD_A1, **claims})
    assert (d.status, d.code) == (403, "invalid_claims")


# --- age and content ratings ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("band", "expected"), [("3-5", "age_restricted"), ("6-9", "age_restricted"), ("10-12", None), ("16-17", None)]
)
def test_min_age_band(band, expected):
    raw = {**OPEN, "min_age_band": "10-12"}
    assert code(decide(raw, {**CHILD_A1, "age_band": band})) == expected
    assert isinstance(decide(raw, PARENT_A), Allow)


@pytest.mark.parametrize("band", [None, "adult", 9])
def test_an_unknown_age_band_is_refused_on_age_restricted_routes(band):
    assert code(decide({**OPEN, "min_age_band": "3-5"}, {**CHILD_A1, "age_band": band})) == "invalid_claims"


@pytest.mark.parametrize(
    ("rating", "cap", "expected"),
    [
        ("TV-PG", None, None),
        ("TV-G", None, None),
        ("TV-Y7", None, "content_restricted"),
        ("TV-14", "TV-Y7", "content_restricted"),  # the parent's cap wins over the age default
        ("TV-14", "TV-G", None),
    ],
)
def test_min_content_rating(rating, cap, expected):
    child = {**CHILD_A1, "content_rating": rating, "max_content_rating": cap}
    assert code(decide({**OPEN, "min_content_rating": "TV-G"}, child)) == expected


@pytest.mark.parametrize(("rating", "cap"), [("R", None), (None, None), ("TV-G", "NC-17"), ("TV-G", 3)])
def test_unknown_ratings_refuse_the_child_everywhere(rating, cap):
    child = {**CHILD_A1, "content_rating": rating, "max_content_rating": cap}
    assert code(decide(OPEN, child)) == "invalid_claims"


def test_effective_rating_is_forwarded_only_when_new():
    assert decide(OPEN, CHILD_A1) == Allow()  # sv-jwt already forwarded TV-Y7
    capped = {**CHILD_A1, "content_rating": "TV-PG", "max_content_rating": "TV-Y7"}
    assert decide(OPEN, capped) == Allow(upstream_headers={"X-Content-Rating": "TV-Y7"})
    route_cap = {**OPEN, "max_content_rating": "TV-Y", "content_rating_header": "X-Rating"}
    assert decide(route_cap, CHILD_A1) == Allow(upstream_headers={"X-Rating": "TV-Y"})
    assert decide(route_cap, PARENT_A) == Allow(upstream_headers={"X-Rating": "TV-Y"})
    assert decide({"public": True, "max_content_rating": "TV-G"}, None).upstream_headers == {"X-Content-Rating": "TV-G"}
    assert decide(OPEN, PARENT_A) == Allow()


def test_custom_scales():
    raw = {**OPEN, "content_ratings": ["G", "PG", "PG-13"], "min_content_rating": "PG"}
    assert isinstance(decide(raw, {**CHILD_A1, "content_rating": "PG-13"}), Allow)
    assert code(decide(raw, {**CHILD_A1, "content_rating": "G"})) == "content_restricted"
    assert code(decide(raw, CHILD_A1)) == "invalid_claims"  # TV-Y7 is not on this scale


# --- generation features ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "expected"), [("text", None), ("image", None), ("audio", "feature_not_allowed")])
def test_generation_kind_from_config(kind, expected):
    raw = {**OPEN, "generation_kind": kind}
    assert code(decide(raw, CHILD_A1, "POST")) == expected
    assert isinstance(decide(raw, PARENT_A, "POST"), Allow)


@pytest.mark.parametrize(
    ("kind", "expected"), [("text", None), ("audio", "feature_not_allowed"), ("video", "feature_not_allowed")]
)
def test_generation_kind_from_a_capture(kind, expected):
    raw = {**OPEN, "kind_capture": "kind"}
    assert code(decide(raw, CHILD_A1, "POST", {"kind": kind})) == expected
    assert code(decide(raw, CHILD_A1, "POST", {})) == "rbac_misconfigured"


@pytest.mark.parametrize("features", [None, "text", [1, 2], {"text": True}])
def test_a_missing_or_garbage_features_claim_refuses_generation(features):
    d = decide({**OPEN, "generation_kind": "text"}, {**CHILD_A1, "features": features}, "POST")
    assert code(d) == "invalid_claims"


def test_an_empty_features_list_allows_nothing():
    d = decide({**OPEN, "generation_kind": "text"}, {**CHILD_A1, "features": []}, "POST")
    assert code(d) == "feature_not_allowed"


def test_check_order_role_then_ownership_then_child_controls():
    raw = {
        "rules": [{"roles": ["parent", "child"]}],
        "owned_captures": [{"name": "child_id", "kind": "child"}],
        "generation_kind": "audio",
    }
    late = at(NY, "23:00")
    assert code(decide(raw, CHILD_A1, "DELETE", {"child_id": "c-a2"}, late)) == "child_method_restricted"
    assert code(decide(raw, CHILD_A1, "POST", {"child_id": "c-a2"}, late)) == "forbidden_family"
    assert code(decide(raw, CHILD_A1, "POST", {"child_id": "c-a1"}, late)) == "outside_allowed_hours"
    assert code(decide(raw, CHILD_A1, "POST", {"child_id": "c-a1"})) == "feature_not_allowed"


# --- what the handler must read ---------------------------------------------------------------------------------------


def test_needs_only_what_the_callers_outcome_depends_on():
    stories = compile_(**STORIES)
    parent, child, admin = (read_caller(i) for i in (PARENT_A, CHILD_A1, ADMIN))
    assert stories.needs(None) == Needs()
    assert stories.needs(parent) == Needs(method=True)  # OPTIONS is refused: any-method routes need it
    assert stories.needs(parent, frozenset({"GET", "POST", "DELETE"})) == Needs()
    assert stories.needs(child, frozenset({"GET", "POST", "DELETE"})) == Needs(method=True)
    assert stories.needs(child, frozenset({"GET", "POST"})) == Needs()
    assert stories.needs(admin, frozenset({"GET", "POST"})) == Needs()  # refused whatever the method
    owned = compile_(**CHILD_ROUTE)
    assert owned.needs(parent) == Needs(captures=True)
    assert compile_(**CHILD_ROUTE, admin_override=True).needs(admin) == Needs()
    kinds = compile_(**OPEN, kind_capture="kind", child_denied_methods=[])
    assert kinds.needs(parent) == Needs()
    assert kinds.needs(child) == Needs(captures=True)


def test_method_set_algebra():
    s = MethodSet(True, frozenset({"DELETE"}))
    assert "GET" in s and "DELETE" not in s
    assert not s.covers(None) and s.covers(frozenset({"GET"})) and not s.uniform(None)
    assert MethodSet(False).uniform(None) and not MethodSet(False).covers(None)
    assert MethodSet(True).covers(None)
