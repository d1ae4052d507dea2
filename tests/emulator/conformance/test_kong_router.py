"""Kong 3.9.1's router (kong/router/traditional.lua + compat.lua, router_flavor = traditional_compatible): which
route matches, and the path it sees (kong/tools/uri.lua normalize)."""

from __future__ import annotations

import pytest
from kong_emulator.config.entities import Route, Service
from kong_emulator.router.traditional import Router, normalize_path

SVC = Service(id="s1", name="svc", host="backend", port=8080, path=None)


def _match(routes, path, method="GET", host="example.com", headers=None):
    return Router(routes, {"s1": SVC}).match(method, host, path, headers or {})


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        # uri.lua:48-58 normalize_decode: reserved stays encoded (upper-cased), unreserved and "other" decode
        ("/%41%2f%3a", "/A%2F%3A"),
        ("/caf%C3%A9", "/caf\u00e9"),
        ("/%ff", "/" + b"\xff".decode("utf-8", "surrogateescape")),  # a byte that is no UTF-8: kept as the byte
        # uri.lua:78-150 dot segments and merged slashes (merge_slashes = true)
        ("/a/./b/../c//d", "/a/c/d"),
    ],
)
def test_paths_are_normalized_byte_for_byte(raw, normalized):
    assert normalize_path(raw, True) == normalized


def test_the_longest_prefix_wins_and_regex_paths_go_first():
    # compat.lua / traditional.lua: regex paths by regex_priority before prefix paths, prefixes longest first
    routes = [
        Route(id="short", name="short", service_id="s1", paths=["/v1"]),
        Route(id="long", name="long", service_id="s1", paths=["/v1/stories"]),
        Route(id="re", name="re", service_id="s1", paths=["~/v1/stories/\\d+$"]),
    ]
    assert _match(routes, "/v1/stories/12").route.id == "re"
    assert _match(routes, "/v1/stories/x").route.id == "long"
    assert _match(routes, "/v1/other").route.id == "short"
    assert _match(routes, "/v2") is None  # handler.lua: 404 "no Route matched with those values"
