"""sv-rbac handler with FakeKong: PDK round trips per case, 401/403/500 problem bodies, nothing after exit."""

from __future__ import annotations

import json

import pytest
from storyverse_plugins import PRIORITIES
from storyverse_plugins.common.identity import SHARED_IDENTITY, SHARED_RBAC, SHARED_REQUEST_ID
from storyverse_plugins.common.problem import PROBLEM_JSON
from storyverse_plugins.rbac import handler
from storyverse_plugins.rbac.handler import Plugin, named_captures, route_methods
from test_rbac_policy import CHILD_A1, NOON_NY, PARENT_A, PARENT_B, at

ROUTE_ID = "3f1c0a52-0000-4000-8000-000000000001"
STORIES = {
    "rules": [
        {"methods": ["GET", "POST"], "roles": ["parent", "child"]},
        {"methods": ["PUT", "PATCH", "DELETE"], "roles": ["parent"]},
    ]
}
CHILDREN = {"rules": [{"roles": ["parent"]}], "owned_captures": [{"name": "child_id", "kind": "child"}]}
GENERATE = {"rules": [{"roles": ["parent", "child"]}], "generation_kind": "image"}
BY_KIND = {"rules": [{"roles": ["parent", "child"]}], "kind_capture": "kind"}


def plugin(raw: dict, route_id: str | None = None, now: float = NOON_NY) -> Plugin:
    return Plugin({**raw, "route_id": route_id, "__plugin_id": "x", "__seq__": 1}, clock=lambda: now)


def kong_for(fake_kong, identity, method="GET", captures=None, route_methods_=None, request_id="rid-1"):
    kong = fake_kong(
        {
            "kong.request.get_method": method,
            "kong.request.get_uri_captures": {"unnamed": {0: "/x"}, "named": captures} if captures else None,
            "kong.router.get_route": {"id": ROUTE_ID, "name": "r", "methods": route_methods_},
        }
    )
    if identity is not None:
        kong.shared[SHARED_IDENTITY] = identity
    kong.shared[SHARED_REQUEST_ID] = request_id
    return kong


@pytest.fixture(autouse=True)
def no_swallowed_errors(caplog):
    """The handler catches everything (even FakeKong's "PDK call after exit"): any logged error fails the test."""
    yield
    errors = [r for r in caplog.get_records("call") if r.name == "storyverse_plugins.rbac" and r.levelname == "ERROR"]
    assert not errors, errors[0].getMessage()


MARK = "kong.ctx.shared.set"  # sv-rbac's decision mark (sv-edge's guard)


def methods(kong) -> list[str]:
    return [name for name, _ in kong.calls]


def body(kong) -> dict:
    return json.loads(kong.exited[1])


def test_priority_and_version():
    assert handler.priority == PRIORITIES["sv-rbac"] == 950
    assert handler.version


def test_a_bad_config_fails_the_instance():
    with pytest.raises(ValueError, match="at least one rule"):
        Plugin({})


# --- round trips ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "identity", "request_method", "captures", "expected"),
    [
        (STORIES, PARENT_A, "DELETE", None, ["kong.ctx.shared.get", "kong.request.get_method"]),
        (STORIES, CHILD_A1, "GET", None, ["kong.ctx.shared.get", "kong.request.get_method"]),
        (CHILDREN, PARENT_A, "PATCH", {"child_id": "c-a1"}, ["kong.ctx.shared.get", "kong.request.get_uri_captures"]),
        (GENERATE, PARENT_A, "POST", None, ["kong.ctx.shared.get"]),
        (GENERATE, CHILD_A1, "POST", None, ["kong.ctx.shared.get", "kong.request.get_method"]),
        ({**GENERATE, "child_denied_methods": []}, CHILD_A1, "POST", None, ["kong.ctx.shared.get"]),
        (BY_KIND, PARENT_A, "POST", None, ["kong.ctx.shared.get"]),
        (
            {**BY_KIND, "child_denied_methods": []},
            CHILD_A1,
            "POST",
            {"kind": "text"},
            ["kong.ctx.shared.get", "kong.request.get_uri_captures"],
        ),
        ({"public": True}, None, "GET", None, ["kong.ctx.shared.get"]),
    ],
)
def test_round_trips_of_a_service_scoped_instance(fake_kong, raw, identity, request_method, captures, expected):
    kong = kong_for(fake_kong, identity, request_method, captures)
    plugin(raw).access(kong.kong)
    assert kong.exited is None
    assert methods(kong) == [*expected, "kong.ctx.shared.set"]  # + sv-edge's decision mark, last
    assert kong.shared[SHARED_RBAC] is True


def test_a_route_scoped_instance_learns_its_routes_methods_once(fake_kong):
    p = plugin(STORIES, ROUTE_ID)
    first = kong_for(fake_kong, CHILD_A1, "GET", route_methods_=["GET", "POST", "DELETE"])
    p.access(first.kong)
    assert methods(first) == ["kong.ctx.shared.get", "kong.router.get_route", "kong.request.get_method", MARK]
    parent = kong_for(fake_kong, PARENT_A, "DELETE")
    p.access(parent.kong)
    assert methods(parent) == ["kong.ctx.shared.get", MARK]  # every method of this route is allowed to parents
    child = kong_for(fake_kong, CHILD_A1, "DELETE")
    p.access(child.kong)
    assert methods(child)[:2] == ["kong.ctx.shared.get", "kong.request.get_method"]
    assert body(child)["code"] == "forbidden_role"


def test_a_single_method_route_never_reads_the_method(fake_kong):
    p = plugin(GENERATE, ROUTE_ID)
    p.access(kong_for(fake_kong, CHILD_A1, "POST", route_methods_=["POST"]).kong)
    kong = kong_for(fake_kong, CHILD_A1, "POST")
    p.access(kong.kong)
    assert methods(kong) == ["kong.ctx.shared.get", MARK] and kong.exited is None


def test_a_route_without_methods_or_another_route_is_read_as_any_method(fake_kong):
    p = plugin(STORIES, ROUTE_ID)
    kong = kong_for(fake_kong, PARENT_A, "OPTIONS", route_methods_=None)
    p.access(kong.kong)
    assert body(kong)["code"] == "forbidden_role"
    assert route_methods({"id": "other", "methods": ["GET"]}, ROUTE_ID) is None
    assert route_methods({"id": ROUTE_ID, "methods": ["get"]}, ROUTE_ID) == frozenset({"GET"})
    assert route_methods({"id": ROUTE_ID, "methods": []}, ROUTE_ID) is None
    assert route_methods({"id": ROUTE_ID, "methods": ["GET", "BREW"]}, ROUTE_ID) is None
    assert route_methods(None, ROUTE_ID) is None


def test_captures_of_a_prefix_route_arrive_as_empty_tables():
    assert named_captures({"unnamed": [], "named": []}) == {}
    assert named_captures(None) == {}
    assert named_captures({"unnamed": {0: "/c/1", 1: "1"}, "named": {"child_id": "1"}}) == {"child_id": "1"}


def test_a_new_rating_is_set_upstream_in_one_call(fake_kong):
    child = {**CHILD_A1, "content_rating": "TV-PG", "max_content_rating": "TV-Y"}
    kong = kong_for(fake_kong, child)
    plugin({**GENERATE, "child_denied_methods": []}).access(kong.kong)
    assert methods(kong) == ["kong.ctx.shared.get", "kong.service.request.set_headers", MARK]
    assert kong.called("kong.service.request.set_headers") == [({"X-Content-Rating": "TV-Y"},)]


# --- refusals ---------------------------------------------------------------------------------------------------------


def test_no_identity_on_a_protected_route_is_no_decision_and_no_mark(fake_kong, caplog):
    """sv-jwt answers 401 itself on a protected route: no identity here means its plugin server failed open. A 401
    would sign a valid user out; without sv-rbac's mark sv-edge answers 503 plugin_unavailable instead."""
    kong = kong_for(fake_kong, None)
    plugin(STORIES).access(kong.kong)
    assert kong.exited is None and SHARED_RBAC not in kong.shared
    assert methods(kong) == ["kong.ctx.shared.get"]
    assert "no identity from sv-jwt" in caplog.text
    caplog.clear()


def test_an_incomplete_identity_is_still_a_401_problem(fake_kong):
    kong = kong_for(fake_kong, {"authenticated": True})
    plugin(STORIES).access(kong.kong)
    status, raw, headers = kong.exited
    assert status == 401 and json.loads(raw)["code"] == "invalid_identity"
    assert headers["Content-Type"] == PROBLEM_JSON and SHARED_RBAC not in kong.shared


@pytest.mark.parametrize(
    ("raw", "identity", "captures", "now", "code"),
    [
        (CHILDREN, PARENT_B, {"child_id": "c-a1"}, NOON_NY, "forbidden_family"),
        (CHILDREN, CHILD_A1, {"child_id": "c-a1"}, NOON_NY, "forbidden_role"),
        (GENERATE, {**CHILD_A1, "features": ["text"]}, None, NOON_NY, "feature_not_allowed"),
        (GENERATE, CHILD_A1, None, at("America/New_York", "21:00"), "outside_allowed_hours"),
        ({**GENERATE, "min_content_rating": "TV-PG"}, CHILD_A1, None, NOON_NY, "content_restricted"),
    ],
)
def test_refusals_are_403_problems_naming_the_rule(fake_kong, raw, identity, captures, now, code):
    kong = kong_for(fake_kong, identity, "POST", captures, request_id=None)
    plugin(raw, now=now).access(kong.kong)
    status, text, headers = kong.exited
    assert (status, json.loads(text)["code"], headers) == (403, code, {"Content-Type": PROBLEM_JSON})
    assert "request_id" not in json.loads(text)
    assert methods(kong)[-1] == "kong.response.exit"


def test_a_misconfigured_capture_fails_closed_with_500(fake_kong):
    kong = kong_for(fake_kong, PARENT_A, "GET", captures=None)
    plugin(CHILDREN).access(kong.kong)
    assert kong.exited[0] == 500 and body(kong)["code"] == "rbac_misconfigured"


# --- faults: always fail closed, never a PDK call after exit ----------------------------------------------------------


def _boom(*_args):
    raise RuntimeError("PDK went away")


@pytest.mark.parametrize("broken", ["kong.request.get_method", "kong.request.get_uri_captures"])
def test_an_exception_is_answered_with_500_not_a_60s_stall(fake_kong, caplog, broken):
    kong = kong_for(fake_kong, CHILD_A1, "GET", {"child_id": "c-a1"})
    kong.returns[broken] = _boom
    plugin({**STORIES, "owned_captures": [{"name": "child_id", "kind": "child"}]}).access(kong.kong)
    status, text, headers = kong.exited
    assert status == 500 and json.loads(text)["code"] == "internal_error"
    assert headers["Content-Type"] == PROBLEM_JSON
    assert "PDK went away" in caplog.text
    caplog.clear()


def test_a_clock_failure_fails_closed(fake_kong, caplog):
    kong = kong_for(fake_kong, CHILD_A1)
    Plugin(STORIES, clock=_boom).access(kong.kong)
    assert kong.exited[0] == 500
    caplog.clear()


def test_an_exception_from_exit_itself_does_not_exit_twice(fake_kong, caplog):
    kong = kong_for(fake_kong, CHILD_A1, "DELETE")  # a child may not delete: a 403 exit
    record = kong._call

    def exploding(method, args):
        result = record(method, args)
        if method == "kong.response.exit":
            raise RuntimeError("exit blew up")
        return result

    kong._call = exploding
    plugin(STORIES).access(kong.kong)  # a second exit would raise in FakeKong (a PDK call after exit)
    assert len(kong.called("kong.response.exit")) == 1
    assert "exit blew up" in caplog.text
    caplog.clear()
