"""The native ``proxy-cache`` plugin (Kong 3.9, strategy memory): Miss → Hit, Bypass for methods/statuses/content
types, TTL expiry, Refresh, vary_headers, the cache key; unit tests with a fake clock, then the real process."""

from __future__ import annotations

import hashlib
import time

import pytest
import requests
from kong_emulator.config.entities import Plugin, Route
from kong_emulator.config.errors import ConfigError
from kong_emulator.config.plugin_schema import normalize_config
from kong_emulator.native import native_infos
from kong_emulator.native.proxy_cache import (
    ProxyCache,
    build_cache_key,
    content_type_matches,
    parse_directive_header,
    store_for,
)
from kong_emulator.runloop.context import ClientRequest, Headers, RequestContext
from kong_emulator.testing import EmulatorProcess
from sample_backend.testing import running

JSON_UTF8 = "application/json; charset=utf-8"


def test_info_schema_and_entity_check():
    info = native_infos()["proxy-cache"]
    assert info.priority == 100 and info.phases == ("access", "header_filter", "body_filter")
    with pytest.raises(ConfigError, match="required field missing"):
        normalize_config(info, {}, "plugins[0]")  # strategy has no default
    conf = normalize_config(info, {"strategy": "memory"}, "plugins[0]")
    assert conf["response_code"] == [200, 301, 404] and conf["request_method"] == ["GET", "HEAD"]
    assert conf["content_type"] == ["text/plain", "application/json"] and conf["cache_ttl"] == 300
    assert conf["memory"] == {"dictionary_name": "kong_db_cache"}
    assert conf["response_headers"] == {"age": True, "X-Cache-Status": True, "X-Cache-Key": True}
    assert info.entity_check(conf) is None
    assert info.entity_check({**conf, "memory": {"dictionary_name": "nope"}}) == "missing shared dict 'nope'"


def test_cache_key_is_kongs_sha256_of_prefix_method_request_line_query_headers():
    conf = {"vary_query_params": None, "vary_headers": ["Accept-Language"]}
    headers = Headers([("accept-language", "fr")])
    key = build_cache_key(None, "r1", "GET", "GET /u HTTP/1.1", {"b": "2", "a": ["y", "x"]}, headers, conf)
    assert key == hashlib.sha256(b"r1|GET|GET /u HTTP/1.1|a=x,y:b=2|Accept-Language=fr").hexdigest()
    with_consumer = build_cache_key("c1", "r1", "GET", "GET /u HTTP/1.1", {}, Headers(), conf)
    assert with_consumer == hashlib.sha256(b"c1:r1|GET|GET /u HTTP/1.1||").hexdigest()
    # an identity header is not part of the key unless listed in vary_headers
    other_user = build_cache_key(None, "r1", "GET", "GET /u HTTP/1.1", {}, Headers([("x-user-id", "2")]), conf)
    assert other_user == build_cache_key(None, "r1", "GET", "GET /u HTTP/1.1", {}, Headers(), conf)


def test_content_type_needs_the_same_parameters():
    assert content_type_matches("application/json", ["application/json"])
    assert not content_type_matches(JSON_UTF8, ["application/json"])
    assert content_type_matches(JSON_UTF8, [JSON_UTF8])
    assert content_type_matches("text/html", ["text/*"])
    assert parse_directive_header('max-age=60, no-cache, private="x"') == {
        "max-age": 60,
        "no-cache": True,
        "private": '"x"',
    }


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def _ctx(method="GET", path="/u") -> RequestContext:
    req = ClientRequest(
        method=method, scheme="http", host="h", port=8000, path=path, raw_path=path, raw_query="",
        headers=Headers(), body=b"", client_ip="127.0.0.1", forwarded_ip="127.0.0.1",
    )  # fmt: skip
    ctx = RequestContext(request=req, request_id="rid")
    ctx.route = Route(id="route-unit", name="u", service_id=None)
    return ctx


def _respond(cache: ProxyCache, plugin: Plugin, ctx, status=200, ctype="application/json", body=b"{}"):
    ctx.response.status = status
    ctx.response.headers.set("Content-Type", ctype)
    cache.run_phase(plugin, "header_filter", ctx, 0)
    ctx.body_filter_arg = [body, False]
    cache.run_phase(plugin, "body_filter", ctx, 0)
    ctx.body_filter_arg = [b"", True]
    cache.run_phase(plugin, "body_filter", ctx, 0)


def test_miss_hit_refresh_and_expiry_with_a_fake_clock():
    clock = Clock()
    cache = ProxyCache(clock)
    info = native_infos()["proxy-cache"]
    conf = normalize_config(
        info, {"strategy": "memory", "cache_ttl": 2, "storage_ttl": 10, "memory": {"dictionary_name": "kong"}}, "p"
    )
    plugin = Plugin(id="pc-unit", name="proxy-cache", config=conf, route_id="route-unit")
    store_for("kong").entries.clear()
    ctx = _ctx()
    cache.run_phase(plugin, "access", ctx, 0)
    assert ctx.response.headers.get("X-Cache-Status") == "Miss" and ctx.exit is None
    _respond(cache, plugin, ctx, body=b'{"a":1}')
    clock.now += 1
    hit = _ctx()
    cache.run_phase(plugin, "access", hit, 0)
    assert hit.exit is not None and hit.exit.status == 200 and hit.exit.body == b'{"a":1}'
    assert hit.exit.headers.get("X-Cache-Status") == "Hit" and hit.exit.headers.get("Age") == "1"
    assert hit.kong_proxied is True
    clock.now += 2  # 3 s old > cache_ttl 2, still stored (storage_ttl 10): Refresh
    refresh = _ctx()
    cache.run_phase(plugin, "access", refresh, 0)
    assert refresh.exit is None and refresh.response.headers.get("X-Cache-Status") == "Refresh"
    clock.now += 10  # gone from the store: Miss
    miss = _ctx()
    cache.run_phase(plugin, "access", miss, 0)
    assert miss.response.headers.get("X-Cache-Status") == "Miss"
    post = _ctx(method="POST")
    cache.run_phase(plugin, "access", post, 0)
    assert post.response.headers.get("X-Cache-Status") == "Bypass" and post.response.headers.get("X-Cache-Key") is None


# ---- through the emulator --------------------------------------------------------------------------------------


def kong_yml(backend: str) -> str:
    return f"""
_format_version: "3.0"
services:
  - name: echo
    url: {backend}/__echo
    routes:
      - name: universes
        paths: ["/universes"]
        plugins:
          - name: proxy-cache
            config:
              strategy: memory
              cache_ttl: 1
              content_type: ["{JSON_UTF8}"]
              vary_headers: ["Accept-Language"]
      - name: default-types
        paths: ["/default-types"]
        plugins:
          - name: proxy-cache
            config:
              strategy: memory
  - name: statuses
    url: {backend}/__status
    routes:
      - name: status
        paths: ["/status-of"]
        plugins:
          - name: proxy-cache
            config:
              strategy: memory
              content_type: ["{JSON_UTF8}"]
"""


@pytest.fixture(scope="module")
def backend():
    with running("echo") as urls:
        yield urls["echo"]


@pytest.fixture(scope="module")
def gw(backend):
    gw = EmulatorProcess(kong_yml(backend), strict=True).start()
    try:
        yield gw
        assert not gw.strict_failures(), gw.strict_failures()
    finally:
        gw.stop()


def test_miss_then_hit_serves_the_stored_response(gw):
    first = requests.get(gw.url + "/universes/1", timeout=5)
    assert first.status_code == 200 and first.headers["X-Cache-Status"] == "Miss"
    assert "X-Kong-Upstream-Latency" in first.headers
    second = requests.get(gw.url + "/universes/1", timeout=5)
    assert second.headers["X-Cache-Status"] == "Hit"
    assert second.content == first.content  # the upstream's echo of the *first* request (its request id)
    assert second.headers["X-Cache-Key"] == first.headers["X-Cache-Key"]
    assert second.headers["Age"] in ("0", "1")
    assert second.headers["Via"].endswith("kong/" + gw_version())  # KONG_PROXIED: proxied headers
    assert "X-Kong-Upstream-Latency" not in second.headers and "X-Kong-Proxy-Latency" not in second.headers
    assert second.headers["X-Kong-Request-Id"] != first.headers["X-Kong-Request-Id"]


def gw_version() -> str:
    from kong_emulator import KONG_VERSION

    return KONG_VERSION


def test_vary_headers_and_query_make_other_entries(gw):
    fr = requests.get(gw.url + "/universes/2", headers={"Accept-Language": "fr"}, timeout=5)
    de = requests.get(gw.url + "/universes/2", headers={"Accept-Language": "de"}, timeout=5)
    assert fr.headers["X-Cache-Status"] == "Miss" and de.headers["X-Cache-Status"] == "Miss"
    assert fr.headers["X-Cache-Key"] != de.headers["X-Cache-Key"]
    fr_again = requests.get(gw.url + "/universes/2", headers={"Accept-Language": "fr"}, timeout=5)
    assert fr_again.headers["X-Cache-Status"] == "Hit" and fr_again.content == fr.content
    q = requests.get(gw.url + "/universes/2?page=2", headers={"Accept-Language": "fr"}, timeout=5)
    assert q.headers["X-Cache-Status"] == "Miss"


def test_bypass_for_methods_statuses_and_content_types(gw):
    post = requests.post(gw.url + "/universes/3", json={}, timeout=5)
    assert post.headers["X-Cache-Status"] == "Bypass" and "X-Cache-Key" not in post.headers
    for _ in range(2):
        err = requests.get(gw.url + "/status-of/503", timeout=5)
        assert err.status_code == 503 and err.headers["X-Cache-Status"] == "Bypass"
    nf = requests.get(gw.url + "/status-of/404", timeout=5)
    assert nf.headers["X-Cache-Status"] == "Miss"
    assert requests.get(gw.url + "/status-of/404", timeout=5).headers["X-Cache-Status"] == "Hit"
    # Kong's default content_type ["text/plain","application/json"] does not match "application/json; charset=utf-8"
    for _ in range(2):
        resp = requests.get(gw.url + "/default-types", timeout=5)
        assert resp.headers["Content-Type"] == JSON_UTF8 and resp.headers["X-Cache-Status"] == "Bypass"


def test_entries_expire_after_cache_ttl(gw):
    assert requests.get(gw.url + "/universes/ttl", timeout=5).headers["X-Cache-Status"] == "Miss"
    assert requests.get(gw.url + "/universes/ttl", timeout=5).headers["X-Cache-Status"] == "Hit"
    time.sleep(1.1)  # cache_ttl 1: the memory strategy's entry expires with it
    assert requests.get(gw.url + "/universes/ttl", timeout=5).headers["X-Cache-Status"] == "Miss"
