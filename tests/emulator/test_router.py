"""Route matching and upstream paths as Kong 3.x's traditional_compatible router computes them."""

from __future__ import annotations

import pytest
from kong_emulator.config.entities import Route, Service
from kong_emulator.router.traditional import (
    Router,
    https_redirect_status,
    normalize_path,
    route_priority,
    split_paths,
    upstream_uri_v0,
)

SVC = Service(id="s1", name="svc", host="backend", port=8080, path=None)


def route(rid: str, **kw) -> Route:
    return Route(id=rid, name=rid, service_id="s1", **kw)


def match(routes, method="GET", host="example.com", path="/", headers=None, **kw):
    return Router(routes, {"s1": SVC}).match(method, host, path, headers or {}, **kw)


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        ("/a/../b", "/b"),
        ("/a/./b/", "/a/b/"),
        ("/a//b", "/a/b"),
        ("/%7euser/%41", "/~user/A"),
        ("/a%2fb", "/a%2Fb"),
        ("/a/b/..", "/a/"),
        ("/..", "/"),
    ],
)
def test_normalize_path_follows_kong_tools_uri(raw, normalized):
    assert normalize_path(raw) == normalized


def test_longer_prefix_wins_whatever_the_order():
    routes = [route("a", paths=["/v1"]), route("b", paths=["/v1/stories"])]
    assert match(routes, path="/v1/stories/1").route.id == "b"
    assert match(routes, path="/v1/other").route.id == "a"


def test_prefix_matching_is_a_plain_string_prefix():
    assert match([route("a", paths=["/v1/story"])], path="/v1/storybook").route.id == "a"


def test_regex_path_beats_prefix_of_same_weight_and_regex_priority_orders_regexes():
    routes = [
        route("prefix", paths=["/v1/stories"]),
        route("low", paths=["~/v1/stories/\\d+$"]),
        route("high", paths=["~/v1/stories/(?<id>\\d+)$"], regex_priority=10),
    ]
    assert match(routes, path="/v1/stories/42").route.id == "high"
    assert match(routes, path="/v1/stories/x").route.id == "prefix"


def test_more_criteria_categories_beat_regex_priority():
    routes = [
        route("regex", paths=["~/v1/.*"], regex_priority=100),
        route("method+path", paths=["/v1"], methods=["POST"]),
    ]
    assert match(routes, method="POST", path="/v1/x").route.id == "method+path"
    assert match(routes, method="GET", path="/v1/x").route.id == "regex"


def test_plain_host_beats_wildcard_host():
    routes = [route("wild", hosts=["*.example.com"]), route("plain", hosts=["api.example.com"])]
    assert match(routes, host="api.example.com").route.id == "plain"
    assert match(routes, host="www.example.com").route.id == "wild"
    assert match([route("suffix", hosts=["api.*"])], host="api.test").route.id == "suffix"
    assert match(routes, host="example.org") is None


def test_host_with_port_matches_the_port():
    routes = [route("p", hosts=["example.com:8000"])]
    assert match(routes, host="example.com:8000").route.id == "p"
    assert match(routes, host="example.com", port=8000).route.id == "p"
    assert match(routes, host="example.com:9000") is None


def test_headers_match_case_insensitively_and_with_regex_values():
    routes = [route("h", headers={"X-Version": ["V2", "v3"]}), route("re", headers={"x_client": ["~*^ios-"]})]
    assert match(routes, headers={"x-version": "v2"}).route.id == "h"
    assert match(routes, headers={"X-Client": ["IOS-17"]}).route.id == "re"
    assert match(routes, headers={"x-version": "v4"}) is None


def test_more_headers_rank_higher():
    routes = [route("one", headers={"a": ["1"]}), route("two", headers={"a": ["1"], "b": ["2"]})]
    assert match(routes, headers={"a": "1", "b": "2"}).route.id == "two"


def test_methods_are_exact():
    assert match([route("m", methods=["GET"])], method="POST") is None


def test_routes_without_http_protocols_never_match():
    assert match([route("tcp", protocols=["tcp"], paths=["/"])]) is None


def test_captures_have_kongs_get_uri_captures_shape():
    m = match([route("r", paths=["~/v1/(?<kind>stories|tales)/(\\d+)"])], path="/v1/stories/7/x")
    assert m.captures == {"unnamed": {0: "/v1/stories/7", 1: "stories", 2: "7"}, "named": {"kind": "stories"}}
    assert m.matched_path == "/v1/stories/7" and m.upstream_path == "/x"
    assert match([route("p", paths=["/v1"])], path="/v1").captures == {"unnamed": {}, "named": {}}
    assert match([route("n", paths=["~/v1$"])], path="/v1").captures == {"unnamed": {}, "named": {}}


def test_routes_with_several_path_lengths_are_split_with_stable_uuid5_ids():
    r = route("8a8a8a8a-0000-4000-8000-000000000000", paths=["/a", "/bb", "/cc", "~/d"])
    ids = [i for i, _ in split_paths(r)]
    assert [p for _, p in split_paths(r)] == [["/a"], ["/bb", "/cc"], ["~/d"]]
    assert ids == [i for i, _ in split_paths(r)] and len(set(ids)) == 3
    other = route("other", paths=["/bb/x"])
    # "/bb" of the split route competes with its own length, not with the longest path of the route
    assert match([r, other], path="/bb/x/y").route.id == "other"


def test_priority_layout_follows_get_priority():
    r = route("r", paths=["~/x"], hosts=["a.com"], methods=["GET"], headers={"a": ["1"]}, regex_priority=3)
    assert route_priority(r, ["~/x"]) == (4 << 61) | (1 << 60) | (1 << 52) | (1 << 51) | (3 << 19)
    assert route_priority(route("p"), ["/abc"]) == (1 << 61) | 4


@pytest.mark.parametrize(
    ("service_path", "strip", "route_path", "req_path", "upstream"),
    [
        ("/s", False, "/fv0", "/fv0req", "/s/fv0req"),
        ("/s", True, "/fv0", "/fv0req", "/s/req"),
        ("/s", True, "/fv0/", "/fv0/req", "/s/req"),
        ("/s/", False, "/fv0", "/fv0req", "/s/fv0req"),
        ("/s/", True, "/fv0", "/fv0req", "/s/req"),
        ("/s/", True, "/fv0/", "/fv0/req", "/s/req"),
        ("/s", True, "/fv0", "/fv0", "/s"),
        ("/s", True, "/fv0", "/fv0/", "/s/"),
        ("/s/", True, "/fv0", "/fv0", "/s"),
        (None, True, "/fv0", "/fv0", "/"),
        (None, True, "/fv0", "/fv0/a", "/a"),
        (None, False, "/fv0", "/fv0/a", "/fv0/a"),
    ],
)
def test_upstream_path_v0_table(service_path, strip, route_path, req_path, upstream):
    service = Service(id="s1", name="svc", host="b", path=service_path)
    r = Route(id="r", name="r", service_id="s1", paths=[route_path], strip_path=strip)
    assert Router([r], {"s1": service}).match("GET", "h", req_path, {}).upstream_path == upstream


def test_postfix_cannot_climb_out_of_the_service_path():
    assert upstream_uri_v0(True, "", "/", "/") == "/"
    r = Route(id="r", name="r", service_id="s1", paths=["~/a"], strip_path=True)
    service = Service(id="s1", name="svc", host="b", path="/s")
    assert Router([r], {"s1": service}).match("GET", "h", "/a../x", {}).upstream_path == "/s/x"


def test_query_string_is_ignored_and_path_normalised_before_matching():
    m = match([route("r", paths=["/v1/stories"])], path="/v1/x/../stories/%41?q=1")
    assert m.route.id == "r" and m.upstream_path == "/A"


def test_upstream_host_and_https_redirect():
    m = match([route("r", paths=["/"])])
    assert m.upstream_host("client.example:8000", "10.0.0.1", 80) == "10.0.0.1"
    assert m.upstream_host("client.example:8000", "10.0.0.1", 8080) == "10.0.0.1:8080"
    assert m.upstream_host("client.example:8000", "10.0.0.1", 8080, host_header="up.internal") == "up.internal"
    keep = match([route("k", paths=["/"], preserve_host=True)])
    assert keep.upstream_host("client.example:8000", "10.0.0.1", 80) == "client.example:8000"
    https_only = route("h", paths=["/"], protocols=["https"], https_redirect_status_code=308)
    assert https_redirect_status(https_only, "http") == 308 and https_redirect_status(https_only, "https") is None
