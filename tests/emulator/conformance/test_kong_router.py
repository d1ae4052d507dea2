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


# ---- through the proxy: the router reads $request_uri normalized, never nginx's decoded $uri ----------------------
# kong/router/atc.lua:446-449 (the traditional_compatible flavour, kong/router/init.lua:20) matches
# strip_uri_args(var.request_uri) = kong/router/utils.lua:57-63 normalize(req_uri, true): reserved characters
# (uri.lua:28, incl. "/", "?", "%") stay percent-encoded, so "%2F" is no path separator and "%3F" no query. The
# upstream URI is built from that same string (atc.lua:335-345) and escaped (handler.lua:1324); the query goes out as
# the client sent it (var.args) and a lone "?" is kept (handler.lua:1386-1394).


@pytest.fixture(scope="module")
def gw():
    from kong_emulator.testing import EmulatorProcess
    from proxy_support import Upstream

    up = Upstream().start()
    yml = (
        '_format_version: "3.0"\nservices:\n'
        f"- name: echo\n  url: {up.url}/echo\n  routes:\n  - name: api\n    paths: [/api]\n"
        f"- name: plain\n  url: {up.url}\n  routes:\n  - name: exact\n    paths: [/echo/exact/a/b]\n"
        "    strip_path: false\n"
    )
    with EmulatorProcess(yml, [], strict=True) as gw:
        yield gw
    up.stop()


def _get(port: int, target: str) -> tuple[int, dict]:
    import http.client
    import json

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.putrequest("GET", target, skip_accept_encoding=True)
        conn.putheader("Accept", "application/json")
        conn.endheaders()
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


def test_an_encoded_slash_is_not_a_path_separator_for_the_router(gw):
    # normalize keeps %2F: "/echo/exact/a%2Fb" does not start with the prefix "/echo/exact/a/b" → handler.lua
    # access.before 404 "no Route matched with those values" (nginx's $uri would read "/echo/exact/a/b")
    status, body = _get(gw.port, "/echo/exact/a%2Fb")
    assert (status, body["message"]) == (404, "no Route matched with those values")
    # merged slashes and decoded unreserved characters do match: normalize gives "/echo/exact/a/b"
    status, body = _get(gw.port, "/echo//exact/%61/b")
    assert (status, body["raw_path"]) == (200, "/echo/exact/a/b")


def test_the_upstream_path_keeps_reserved_characters_encoded(gw):
    # "/api/x%2Fy%3Fz%41" → normalized "/api/x%2Fy%3FzA" → strip_path → "/echo/x%2Fy%3FzA": %3F stays in the path
    status, body = _get(gw.port, "/api/x%2Fy%3Fz%41")
    assert (status, body["raw_path"]) == (200, "/echo/x%2Fy%3FzA")


def test_dot_segments_are_removed_after_decoding(gw):
    # uri.lua:93 "it's expected that /%2e./ is considered the same of /../"
    status, body = _get(gw.port, "/api/a/%2e%2E/b/./c")
    assert (status, body["raw_path"]) == (200, "/echo/b/c")


def test_the_query_goes_upstream_as_sent(gw):
    # (a lone "?" is the one thing the wire loses: docs/emulator.md, known differences)
    status, body = _get(gw.port, "/api/q?a=%41&b=%2f&c=/../x")
    assert (status, body["raw_path"]) == (200, "/echo/q?a=%41&b=%2f&c=/../x")


def test_get_path_with_query_is_the_request_uri_as_sent():
    # kong/pdk/request.lua:457-460 get_path_with_query returns var.request_uri, not the decoded $uri
    from emu_support import make_ctx
    from kong_emulator.pdk import PDK

    ctx = make_ctx(path="/a%2Fb/%2e%2e/c", raw_query="x=%41")
    ctx.request.path = "/a/c"  # nginx's $uri for that target
    pdk = PDK()
    assert pdk.call(pdk.new_call(ctx, "access", "p"), "kong.request.get_path_with_query", []) == "/a%2Fb/%2e%2e/c?x=%41"
