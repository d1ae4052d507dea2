"""sv-edge (kong-plugins/kong/plugins/sv-edge/), in-process as Kong runs a Lua plugin: its schema, the guard over the
decision marks, identity headers stripped first and applied last, version paths, 410, docs files, quota headers,
cache hits and the access-log fields. The error format is in test_error_format_*.py; through the whole stack with
killed, hung and crashing plugin servers in tests/e2e/test_fail_closed_e2e.py."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from pathlib import Path

import pytest
from emu_support import External, make_ctx
from kong_emulator.config.entities import Plugin
from kong_emulator.config.errors import ConfigError
from kong_emulator.config.plugin_schema import normalize_config
from kong_emulator.native import NativeRunner, native_infos
from kong_emulator.native.lua_plugins import load_infos
from kong_emulator.pdk.response import unexpected_error
from kong_emulator.runloop.context import Headers, UpstreamRequest
from kong_emulator.tools import kong_errors
from storyverse_contracts.identity import IDENTITY_HEADER_PREFIX, IDENTITY_HEADERS
from storyverse_plugins.common.identity import (
    SHARED_IDENTITY,
    SHARED_QUOTA,
    SHARED_QUOTA_LOG,
    SHARED_RBAC,
)

REPO = Path(__file__).resolve().parents[2]
EDGE = load_infos(["sv-edge"], f"{REPO / 'kong-plugins'}/?.lua")["sv-edge"]
ALL = ["sv-jwt", "sv-rbac", "sv-quota", "sv-quota-log"]
# every decision mark, as each plugin leaves it (storyverse_plugins.common.identity)
MARKS = {
    "sv-jwt": (SHARED_IDENTITY, {"authenticated": True, "sub": "u-1"}),
    "sv-rbac": (SHARED_RBAC, True),
    "sv-quota": (SHARED_QUOTA, {"ok": True}),
    "sv-quota-log": (SHARED_QUOTA_LOG, True),
}


@pytest.fixture
def runner():
    return NativeRunner(External(), infos={**native_infos(), "sv-edge": EDGE})


def edge(**config) -> Plugin:
    return Plugin(id=str(uuid.uuid4()), name="sv-edge", config=normalize_config(EDGE, config, "test"))


def ctx_for(headers=(), path="/api/v1/stories", raw_query=""):
    ctx = make_ctx(headers=list(headers), path=path, raw_query=raw_query)
    ctx.upstream = UpstreamRequest(method="GET", path=path, raw_query=raw_query, headers=Headers(list(headers)))
    return ctx


def run(runner, plugin, phase, ctx):
    ctx.phase = phase
    asyncio.run(runner.run_phase(plugin, phase, ctx))
    return ctx


def marked(*names, **extra):
    shared = dict(MARKS[n] for n in names)
    shared.update(extra)
    return shared


# -- schema --------------------------------------------------------------------------------------------------------


def test_priority_and_phases_put_the_guard_after_every_security_plugin_and_before_proxy_cache():
    from storyverse_plugins import PRIORITIES

    assert min(PRIORITIES[n] for n in ("sv-jwt", "sv-rbac", "sv-quota", "sv-quota-log", "sv-expand")) > EDGE.priority
    assert EDGE.priority > native_infos()["proxy-cache"].priority
    assert set(EDGE.phases) == {"rewrite", "access", "header_filter", "body_filter", "log"}


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"require": ["sv-expand"]}, "field 'config.require[0]': expected one of: sv-jwt, sv-rbac, sv-quota"),
        ({"retry_after": 0}, "field 'config.retry_after': value should be between 1 and 3600"),
        ({"serve": {"file": "../../etc/passwd", "headers": {}}}, "field 'config.serve.file'"),
        ({"deprecation": {"at": 1}}, "field 'config.deprecation.sunset': required field missing"),
        ({"strip_headers": ["X User"]}, "field 'config.strip_headers[0]'"),
    ],
)
def test_bad_configs_are_refused_with_kongs_messages(config, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        normalize_config(EDGE, config, "plugin sv-edge")


# -- the guard -----------------------------------------------------------------------------------------------------


def test_every_required_mark_present_passes(runner):
    ctx = ctx_for()
    ctx.shared.update(marked(*ALL))
    run(runner, edge(require=ALL), "access", ctx)
    assert ctx.exit is None and not [line for line in ctx.log_lines if line[0] == "err"]


@pytest.mark.parametrize("missing", ALL)
def test_any_missing_mark_is_503_plugin_unavailable(runner, missing):
    ctx = ctx_for()
    ctx.shared.update(marked(*[n for n in ALL if n != missing]))
    ctx.shared["sv_request_id"] = "req-1"
    run(runner, edge(require=ALL, retry_after=7), "access", ctx)
    assert ctx.exit.status == 503
    assert ctx.exit.headers.get("Content-Type") == "application/problem+json"
    assert ctx.exit.headers.get("Retry-After") == "7"
    assert json.loads(ctx.exit.body) == {
        "type": "https://docs.storyverse.example/problems/plugin-unavailable",
        "title": "Service Unavailable",
        "status": 503,
        "detail": "The gateway cannot check this request right now. Please try again shortly.",
        "code": "plugin_unavailable",
        "request_id": "req-1",
    }
    assert any(f"no decision mark from {missing}" in line[2] for line in ctx.log_lines)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("sv-jwt", {"authenticated": "yes"}),
        ("sv-jwt", {"authenticated": 1}),
        ("sv-jwt", {"sub": "u"}),
        ("sv-jwt", "authenticated"),
        ("sv-rbac", "true"),
        ("sv-rbac", 1),
        ("sv-quota", {"ok": "true"}),
        ("sv-quota", True),
        ("sv-quota-log", {"ok": True}),
    ],
)
def test_only_the_exact_mark_counts(runner, name, value):
    ctx = ctx_for()
    ctx.shared.update(marked(*ALL))
    ctx.shared[MARKS[name][0]] = value
    run(runner, edge(require=ALL), "access", ctx)
    assert ctx.exit is not None and ctx.exit.status == 503


def test_a_route_that_requires_nothing_passes_without_marks(runner):
    ctx = run(runner, edge(require=[]), "access", ctx_for())
    assert ctx.exit is None


def test_an_unsafe_request_id_is_never_echoed(runner):
    ctx = ctx_for()
    ctx.shared["sv_request_id"] = 'x","injected":"1'
    run(runner, edge(require=["sv-jwt"]), "access", ctx)
    assert json.loads(ctx.exit.body)["request_id"] == "rid-1"  # Kong's own request id instead


# -- Kong's 500 for a plugin's Lua error before the guard ran (kong/init.lua:379-414) --------------------------------


def filters(runner, plugin, ctx, exit_=None):
    """Kong.header_filter then Kong.body_filter over the response (`exit_` or ctx.response): (status, headers, body).
    The emulator's proxy does the same for every response (runloop/proxy.py `_filters`)."""
    if exit_ is not None:
        ctx.exit = exit_
        ctx.response.status, ctx.response.headers, ctx.response.source = exit_.status, exit_.headers, exit_.source
    run(runner, plugin, "header_filter", ctx)
    body = b""
    if ctx.request.method != "HEAD":
        chunks = [exit_.body if exit_ is not None else b"", b""]  # the body, then the last (empty) buffer
        for i, chunk in enumerate(chunks):
            ctx.body_filter_arg = arg = [chunk, i == len(chunks) - 1]
            run(runner, plugin, "body_filter", ctx)
            body += arg[0] or b""
        del ctx.body_filter_arg
    return ctx.response.status, ctx.response.headers, body


def kongs_500(ctx):
    """What Kong answers when a plugin raised in access: kong.response.error(500, ...) with KONG_UNEXPECTED."""
    return unexpected_error(ctx, "access")


def test_a_plugin_that_raised_before_the_guard_gets_the_guards_503(runner):
    ctx = ctx_for(headers=[("Accept", "application/json")])
    ctx.shared.update(marked("sv-jwt"))  # sv-rbac raised (e.g. its plugin server's reply had another msgid)
    ctx.shared["sv_request_id"] = "req-1"
    status, headers, body = filters(runner, edge(require=ALL, retry_after=7), ctx, kongs_500(ctx))
    assert status == 503 and headers.get("Retry-After") == "7"
    assert headers.get("Content-Type") == "application/problem+json" and headers.get("Content-Length") is None
    guarded = run(runner, edge(require=ALL, retry_after=7), "access", ctx_for())  # the guard's own 503 ...
    assert json.loads(body) == {**json.loads(guarded.exit.body), "request_id": "req-1"}  # ... the same document
    assert any("a plugin failed before the guard" in line[2] for line in ctx.log_lines)


def test_a_head_request_gets_the_503_status_and_no_body(runner):
    ctx = ctx_for()
    ctx.request.method = "HEAD"
    status, headers, body = filters(runner, edge(require=["sv-quota"]), ctx, kongs_500(ctx))
    assert (status, body) == (503, b"") and headers.get("Retry-After") == "5"


@pytest.mark.parametrize("case", ["route requires nothing", "guard ran", "upstream 500", "Kong's 502"])
def test_other_500s_and_errors_stay_as_they_are(runner, case):
    ctx = ctx_for()
    plugin = edge(require=[] if case == "route requires nothing" else ["sv-quota"])
    exit_ = kongs_500(ctx)
    if case == "guard ran":  # a Lua error after sv-edge's access (a later plugin's): Kong's 500, honestly
        ctx.shared.update(marked("sv-quota"))
        assert run(runner, plugin, "access", ctx).exit is None
    elif case == "upstream 500":
        exit_ = None
        ctx.response.status, ctx.response.source = 500, "service"
        ctx.response.headers = Headers([("Content-Type", "text/plain")])
    elif case == "Kong's 502":
        exit_ = kong_errors.handler_error(ctx, 502)
    status, _, body = filters(runner, plugin, ctx, exit_)
    assert status == (502 if case == "Kong's 502" else 500)
    assert json.loads(body)["code"] != "plugin_unavailable"
    assert not any("a plugin failed before the guard" in line[2] for line in ctx.log_lines)


# -- identity: stripped first, applied last --------------------------------------------------------------------------

SPOOFED = [("X-User-Id", "admin"), ("x_user_role", "admin"), ("X-Sv-Debug", "1"), ("X-Family-ID", "f"),
           ("X-Other", "kept")]  # fmt: skip
GLOBAL = {"strip_headers": list(IDENTITY_HEADERS.values()), "strip_header_prefixes": [IDENTITY_HEADER_PREFIX]}


def test_rewrite_strips_every_client_identity_header_and_spelling(runner):
    ctx = run(runner, edge(**GLOBAL), "rewrite", ctx_for(SPOOFED))
    assert [name for name, _ in ctx.upstream.headers.items()] == ["X-Other"]
    assert ctx.request.headers.get("X-User-Id") is None  # what every later plugin reads (kong.request)


def test_access_applies_the_gateway_identity_and_keeps_a_later_plugins_value(runner):
    ctx = run(runner, edge(**GLOBAL), "rewrite", ctx_for(SPOOFED))
    ctx.shared.update(marked(*ALL))
    ctx.shared[SHARED_IDENTITY] = {
        "authenticated": True,
        "sub": "u-1",
        "upstream": {"X-User-Id": "u-1", "X-User-Role": "child", "X-Content-Rating": "G"},
    }
    ctx.upstream.headers.set("X-Content-Rating", "PG")  # sv-rbac's effective rating (set_headers in its access)
    ctx.request.headers.set("X-Content-Rating", "PG")
    run(runner, edge(**GLOBAL, require=ALL), "access", ctx)
    headers = ctx.upstream.headers
    assert headers.get_all("X-User-Id") == ["u-1"] and headers.get_all("X-User-Role") == ["child"]
    assert headers.get_all("X-Content-Rating") == ["PG"] and headers.get("X-Sv-Debug") is None


def test_no_identity_means_no_identity_headers(runner):
    ctx = run(runner, edge(**GLOBAL), "rewrite", ctx_for(SPOOFED))
    ctx.shared.update(marked("sv-quota"))
    run(runner, edge(require=["sv-quota"]), "access", ctx)
    assert ctx.exit is None and ctx.upstream.headers.get("X-User-Id") is None


# -- paths, versions, docs ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "upstream"),
    [("/api/v1/stories/7", "/api/stories/7"), ("/api/v12/auth/login", "/api/auth/login"), ("/api/stories", None),
     ("/.well-known/jwks.json", None)],
)  # fmt: skip
def test_the_upstream_path_loses_the_version(runner, path, upstream):
    ctx = run(runner, edge(), "access", ctx_for(path=path))
    assert ctx.upstream.path == (upstream or path)


def test_a_retired_version_is_410_with_sunset(runner):
    plugin = edge(gone="API v1 was retired on 2026-07-01; use /api/v2.", sunset="Wed, 01 Jul 2026 00:00:00 GMT")
    ctx = run(runner, plugin, "access", ctx_for())
    assert ctx.exit.status == 410 and ctx.exit.headers.get("Sunset") == "Wed, 01 Jul 2026 00:00:00 GMT"
    doc = json.loads(ctx.exit.body)
    assert doc["code"] == "api_version_retired" and doc["detail"] == "API v1 was retired on 2026-07-01; use /api/v2."


def test_a_deprecated_version_sends_its_headers_on_every_response(runner):
    plugin = edge(deprecation={"at": 1767225600, "sunset": "Wed, 01 Jul 2026 00:00:00 GMT", "link": "<x>"})
    ctx = ctx_for()
    ctx.response.status, ctx.response.headers = 200, Headers()
    run(runner, plugin, "header_filter", ctx)
    headers = ctx.response.headers
    assert (headers.get("Deprecation"), headers.get("Sunset"), headers.get("Link")) == (
        "@1767225600", "Wed, 01 Jul 2026 00:00:00 GMT", "<x>")  # fmt: skip


def test_docs_are_served_from_the_file_next_to_the_lua_root(runner):
    plugin = edge(require=[], serve={"file": "storyverse.json", "headers": {"Content-Type": "application/json"}})
    ctx = run(runner, plugin, "access", ctx_for(path="/api/v1/openapi.json"))
    assert ctx.exit.status == 200 and ctx.exit.headers.get("Content-Type") == "application/json"
    assert json.loads(ctx.exit.body) == json.loads((REPO / "docs" / "openapi" / "storyverse.json").read_text())


def test_a_missing_docs_file_is_a_503_problem_not_a_crash(runner):
    plugin = edge(require=[], serve={"file": "nope.json", "headers": {}})
    ctx = run(runner, plugin, "access", ctx_for())
    assert ctx.exit.status == 503 and json.loads(ctx.exit.body)["code"] == "docs_unavailable"


def test_respond_answers_after_the_guard(runner):
    ctx = run(runner, edge(require=["sv-quota"], respond=204), "access", ctx_for())
    assert ctx.exit.status == 503  # no mark: the guard first
    ctx = ctx_for()
    ctx.shared.update(marked("sv-quota"))
    assert run(runner, edge(require=["sv-quota"], respond=204), "access", ctx).exit.status == 204


# -- response headers ----------------------------------------------------------------------------------------------


def test_sv_quotas_headers_are_set_and_a_cache_hit_gets_this_requests_own(runner):
    ctx = ctx_for()
    ctx.shared[SHARED_QUOTA] = {"ok": True, "headers": {"RateLimit": '"m";r=9;t=60', "X-Quota-Remaining": 3}}
    ctx.shared["sv_request_id"] = "mine"
    stored = [("X-Cache-Status", "Hit"), ("X-Request-Id", "theirs"), ("RateLimit", '"m";r=50;t=1'),
              ("RateLimit-Policy", '"m";q=60;w=60')]  # fmt: skip
    ctx.response.status, ctx.response.headers = 200, Headers(stored)
    run(runner, edge(), "header_filter", ctx)
    headers = ctx.response.headers
    assert headers.get("X-Request-Id") == "mine" and headers.get_all("RateLimit") == ['"m";r=9;t=60']
    assert headers.get("RateLimit-Policy") is None and headers.get("X-Quota-Remaining") == "3"


# -- the access log ------------------------------------------------------------------------------------------------


def test_log_sets_request_and_user_ids_and_redacts_secrets(runner):
    ctx = ctx_for(path="/api/v1/universes", raw_query="access_token=s3cret&x=1")
    ctx.shared[SHARED_IDENTITY] = {"authenticated": True, "sub": "u-9"}
    ctx.shared["sv_request_id"] = "req-9"
    run(runner, edge(redact_query_args=["access_token"]), "log", ctx)
    values = dict(ctx.nginx_ctx.get("serialize_values") or [])
    assert values["request_id"] == "req-9" and values["user_id"] == "u-9"
    assert "request.headers.cookie" in values and values["request.headers.cookie"] is None
    assert dict(values["request.querystring"]) == {"access_token": "REDACTED", "x": "1"}
    assert "s3cret" not in values["request.uri"] and "access_token=REDACTED&x=1" in values["request.uri"]


def test_log_redacts_a_secret_query_argument_in_any_spelling(runner):
    """`ACCESS_TOKEN=`, `access%5Ftoken=`, `access_token%00=`: the decoded, case-folded name is what counts."""
    query = "ACCESS_TOKEN=t1&x=1&access%5Ftoken=t2&access_token%00=t3"
    ctx = run(
        runner, edge(redact_query_args=["access_token"]), "log", ctx_for(path="/api/v1/universes", raw_query=query)
    )
    values = dict(ctx.nginx_ctx.get("serialize_values") or [])
    assert (
        values["request.uri"]
        == "/api/v1/universes?ACCESS_TOKEN=REDACTED&x=1&access%5Ftoken=REDACTED&access_token%00=REDACTED"
    )
    assert not {"t1", "t2", "t3"} & set(dict(values["request.querystring"]).values())
