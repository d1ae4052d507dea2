"""The PDK dispatcher against a RequestContext (no plugin server): Kong's shapes, phases and Lua errors."""

from __future__ import annotations

import json

import pytest
from emu_support import make_ctx
from kong_emulator.config.entities import Consumer, Plugin, Route
from kong_emulator.pdk import PDK, LuaError, PDKEnv, step_method_for
from kong_emulator.plugin_servers.rpc import Bin
from kong_emulator.runloop.context import Headers, LogSnapshot

CONSUMER_ID = "8f9a4f3c-0d4e-4b8a-9f7e-2d1c0b9a8e7f"
pdk = PDK(PDKEnv(node_id="node-1", trusted_ips=["10.0.0.0/8"], consumers={CONSUMER_ID: Consumer(CONSUMER_ID, "ann")}))


def call(method, *args, ctx=None, phase="access"):
    ctx = ctx or make_ctx()
    return pdk.call(pdk.new_call(ctx, phase, "t-pdk"), method, list(args))


# -- dispatch ---------------------------------------------------------------------------------------------


def test_3_step_method_per_pdk_method():
    assert step_method_for("kong.request.get_headers") == "plugin.StepMultiMap"
    assert step_method_for("kong.service.response.get_headers") == "plugin.StepMultiMap"
    assert step_method_for("kong.client.authenticate") == "plugin.StepCredential"
    assert step_method_for("kong.client.load_consumer") == "plugin.StepConsumer"
    assert step_method_for("kong.router.get_service") == "plugin.StepService"
    assert step_method_for("kong.node.get_memory_stats") == "plugin.StepMemoryStats"
    assert step_method_for("kong.request.get_header", "x") == "plugin.Step"
    assert step_method_for("kong.request.get_header", {"_method": "plugin.StepX"}) == "plugin.StepX"


def test_4_step_error_only_for_nil_err():
    assert step_method_for("kong.request.get_header", None, "boom") == "plugin.StepError"
    assert step_method_for("kong.request.get_header", "v", "boom") == "plugin.Step"


def test_9_unknown_method_is_logged_and_returns_nil():
    ctx = make_ctx()
    assert call("kong.ctx.plugin.get", "k", ctx=ctx) is None
    assert ctx.log_lines == [("err", "t-pdk", "could not find pdk method: kong.ctx.plugin.get")]


def test_calling_a_pdk_table_is_a_lua_error():
    with pytest.raises(LuaError, match="a table value"):
        call("kong.request")


def test_every_table_4_1_function_is_implemented():
    for name in (
        "kong.request.get_header kong.request.get_headers kong.request.get_method kong.request.get_path "
        "kong.request.get_raw_query kong.request.get_raw_body kong.request.get_uri_captures kong.client.get_ip "
        "kong.client.get_forwarded_ip kong.client.get_consumer kong.client.get_credential kong.client.load_consumer "
        "kong.client.authenticate kong.response.exit kong.response.error kong.response.set_header "
        "kong.service.request.set_header kong.service.request.add_header kong.service.request.clear_header "
        "kong.service.request.set_headers kong.ctx.shared.set kong.ctx.shared.get kong.router.get_route "
        "kong.router.get_service kong.nginx.get_var kong.node.get_id kong.plugin.get_id kong.log.err "
        "kong.log.warn kong.log.info kong.log.notice kong.log.debug kong.log.serialize"
    ).split():
        assert name in pdk.functions, name


# -- kong.request -----------------------------------------------------------------------------------------


def test_request_header_first_value_dashes_and_type_check():
    ctx = make_ctx(headers=[("X-Mode", "a"), ("x-mode", "b")])
    assert call("kong.request.get_header", "x_mode", ctx=ctx) == "a"
    assert call("kong.request.get_header", "missing", ctx=ctx) is None
    with pytest.raises(LuaError, match="header name must be a string"):
        call("kong.request.get_header", 1, ctx=ctx)


def test_request_headers_fix_mmap_max_and_checks():
    ctx = make_ctx(headers=[("A", "1"), ("B", "2"), ("a", "3")])
    assert call("kong.request.get_headers", ctx=ctx) == {"a": ["1", "3"], "b": ["2"]}
    assert call("kong.request.get_headers", 1, ctx=ctx) == {"a": ["1"]}
    with pytest.raises(LuaError, match="max_headers must be <= 1000"):
        call("kong.request.get_headers", 1001, ctx=ctx)
    assert call("kong.request.get_headers", ctx=make_ctx()) == {}


def test_request_query_shapes():
    ctx = make_ctx(raw_query="a=1&a=2&flag&e=&sp=x+y%21&=z")
    assert call("kong.request.get_query", ctx=ctx) == {"a": ["1", "2"], "flag": [], "e": [""], "sp": ["x y!"]}
    assert call("kong.request.get_query_arg", "flag", ctx=ctx) is True
    assert call("kong.request.get_query_arg", "a", ctx=ctx) == "1"
    assert call("kong.request.get_raw_query", ctx=ctx) == "a=1&a=2&flag&e=&sp=x+y%21&=z"


def test_request_misc_getters():
    ctx = make_ctx(method="POST", path="/v1/x", body=b"\x00\x01")
    ctx.request.http_version = 2.0
    assert call("kong.request.get_method", ctx=ctx) == "POST"
    assert call("kong.request.get_path", ctx=ctx) == "/v1/x"
    assert call("kong.request.get_scheme", ctx=ctx) == "http"
    assert call("kong.request.get_host", ctx=ctx) == "example.test"
    assert call("kong.request.get_port", ctx=ctx) == 8000
    body = call("kong.request.get_raw_body", ctx=ctx)
    assert type(body) is Bin and body == b"\x00\x01"
    assert call("kong.request.get_http_version", ctx=ctx) == 2 and isinstance(
        call("kong.request.get_http_version", ctx=ctx), int
    )
    assert call("kong.request.get_start_time", ctx=ctx) == 1700000000500


def test_request_uri_captures_shape():
    ctx = make_ctx()
    assert call("kong.request.get_uri_captures", ctx=ctx) == {"unnamed": [], "named": []}
    ctx.captures = {"unnamed": {0: "/u/42", 1: "42"}, "named": {"id": "42"}}
    assert call("kong.request.get_uri_captures", ctx=ctx) == {"unnamed": {0: "/u/42", 1: "42"}, "named": {"id": "42"}}


def test_forwarded_getters_honour_trusted_ips():
    ctx = make_ctx(headers=[("X-Forwarded-Proto", "HTTPS"), ("X-Forwarded-Host", "api.example:443")])
    assert call("kong.request.get_forwarded_scheme", ctx=ctx) == "https"
    assert call("kong.request.get_forwarded_host", ctx=ctx) == "api.example"
    untrusted = make_ctx(headers=[("X-Forwarded-Proto", "https")], client_ip="192.0.2.1")
    assert call("kong.request.get_forwarded_scheme", ctx=untrusted) == "http"


# -- kong.client / router / ip ------------------------------------------------------------------------------


def test_authenticate_access_only_and_consumer_scoping():
    ctx = make_ctx()
    consumer = {"id": CONSUMER_ID, "username": "ann", "custom_id": None}
    assert call("kong.client.authenticate", consumer, {"id": "cred-1"}, ctx=ctx) is None
    assert ctx.consumer.id == CONSUMER_ID and ctx.credential == {"id": "cred-1"}
    assert call("kong.client.get_consumer", ctx=ctx) == {"id": CONSUMER_ID, "username": "ann"}  # nil dropped
    with pytest.raises(LuaError, match="either credential or consumer"):
        call("kong.client.authenticate", None, None, ctx=ctx)
    with pytest.raises(LuaError, match="cannot be called in rewrite phase"):
        call("kong.client.authenticate", consumer, None, ctx=ctx, phase="rewrite")


def test_load_consumer():
    assert call("kong.client.load_consumer", CONSUMER_ID)["username"] == "ann"
    assert call("kong.client.load_consumer", "ann", True)["id"] == CONSUMER_ID
    with pytest.raises(LuaError, match="not a uuid"):
        call("kong.client.load_consumer", "ann")


def test_client_ip_and_trust():
    assert call("kong.client.get_ip") == "10.0.0.7"
    assert call("kong.client.get_port") == 40000
    assert call("kong.ip.is_trusted", "10.1.2.3") is True
    assert call("kong.ip.is_trusted", "192.0.2.1") is False


def test_router_entities_and_phases():
    ctx = make_ctx()
    ctx.route = Route(id="r1", name="stories", service_id="s1", paths=["/v1"])
    route = call("kong.router.get_route", ctx=ctx)
    assert route["id"] == "r1" and route["service"] == {"id": "s1"} and route["hosts"] is None
    with pytest.raises(LuaError, match="rewrite phase"):
        call("kong.router.get_route", ctx=ctx, phase="rewrite")


# -- kong.response -----------------------------------------------------------------------------------------


def test_5_exit_shapes():
    ctx = make_ctx()
    call("kong.response.exit", 401, {"message": "no/token"}, {"WWW-Authenticate": "Bearer", "X-L": ["a", "1"]}, ctx=ctx)
    assert ctx.exit.status == 401 and ctx.exit.body == b'{"message":"no\\/token"}'
    assert ctx.exit.headers.get("Content-Type") == "application/json; charset=utf-8"
    assert ctx.exit.headers.get_all("X-L") == ["a", "1"] and ctx.exit.headers.get("Content-Length") == "23"
    ctx = make_ctx()
    call("kong.response.exit", 200, "plain", {"Content-Type": "text/plain"}, ctx=ctx)
    assert ctx.exit.body == b"plain" and ctx.exit.headers.get("Content-Type") == "text/plain"
    with pytest.raises(LuaError, match='invalid header value in array "X-L": got number'):
        call("kong.response.exit", 401, None, {"X-L": ["a", 1]})  # checks.validate_headers: strings only
    ctx = make_ctx()
    call("kong.response.exit", 204, None, {"X-Gone": []}, ctx=ctx)  # an empty array clears the header
    assert "X-Gone" not in ctx.exit.headers
    with pytest.raises(LuaError, match="between 100 and 599"):
        call("kong.response.exit", 600)
    with pytest.raises(LuaError, match="cannot be called in log phase"):
        call("kong.response.exit", 200, phase="log")


def test_5_error_templates_from_accept_and_content_type():
    ctx = make_ctx()
    call("kong.response.error", 403, ctx=ctx)
    assert ctx.exit.body == b'{\n  "message":"Forbidden",\n  "request_id":"rid-1"\n}'
    ctx = make_ctx(headers=[("Accept", "application/json;q=0.5, text/html")])
    call("kong.response.error", 503, ctx=ctx)
    assert ctx.exit.headers.get("Content-Type") == "text/html; charset=utf-8"
    assert b"<p>The upstream server is currently unavailable.</p>" in ctx.exit.body
    ctx = make_ctx()
    call("kong.response.error", 418, "teapot!", {"Content-Type": "application/xml"}, ctx=ctx)
    assert b"<message>teapot!</message>" in ctx.exit.body
    with pytest.raises(LuaError, match="between 400 and 599"):
        call("kong.response.error", 302)


def test_response_headers_status_source():
    ctx = make_ctx()
    call("kong.response.set_header", "X-A", "1", ctx=ctx)
    call("kong.response.add_header", "X-A", "2", ctx=ctx)
    assert ctx.response.headers.get_all("X-A") == ["1", "2"]
    ctx.response.status, ctx.upstream_status, ctx.response.source = 201, 201, "service"
    assert call("kong.response.get_headers", ctx=ctx, phase="response") == {"x-a": ["1", "2"]}
    assert call("kong.response.get_status", ctx=ctx, phase="response") == 201
    assert call("kong.response.get_source", ctx=ctx, phase="response") == "service"
    with pytest.raises(LuaError, match="access phase"):
        call("kong.response.get_status", ctx=ctx)


# -- kong.service ------------------------------------------------------------------------------------------


def test_service_request_setters():
    ctx = make_ctx(headers=[("X-User-Id", "spoofed")])
    call("kong.service.request.clear_header", "X-User-Id", ctx=ctx)
    call("kong.service.request.set_header", "X-User-Id", "u1", ctx=ctx)
    assert ctx.upstream.headers.get_all("X-User-Id") == ["u1"]
    assert call("kong.request.get_header", "x-user-id", ctx=ctx) == "u1"  # ngx.req.set_header changes the request
    call("kong.service.request.set_query", {"b": "2", "a": ["x", "y"], "f": True}, ctx=ctx)
    assert ctx.upstream.raw_query == "a=x&a=y&b=2&f"
    call("kong.service.request.set_path", "/v2", ctx=ctx)
    call("kong.service.set_target", "10.0.0.9", 9000, ctx=ctx)
    assert (ctx.upstream.path, ctx.upstream.host, ctx.upstream.port) == ("/v2", "10.0.0.9", 9000)
    with pytest.raises(LuaError, match="port must be an integer"):
        call("kong.service.set_target", "h", 70000, ctx=ctx)
    with pytest.raises(LuaError, match="path must start with /"):
        call("kong.service.request.set_path", "v2", ctx=ctx)


def test_service_response_getters():
    ctx = make_ctx()
    ctx.upstream_status, ctx.upstream_headers, ctx.upstream_body = 200, Headers([("X-Up", "1")]), b"{}"
    assert call("kong.service.response.get_status", ctx=ctx, phase="response") == 200
    assert call("kong.service.response.get_headers", ctx=ctx, phase="response") == {"x-up": ["1"]}
    assert call("kong.service.response.get_raw_body", ctx=ctx, phase="response") == Bin(b"{}")


# -- ctx.shared, nginx, node, plugin, log ------------------------------------------------------------------


def test_ctx_shared_crosses_msgpack_by_value():
    ctx = make_ctx()
    call("kong.ctx.shared.set", "d", {"a": None, "b": 1.0}, ctx=ctx)
    call("kong.ctx.shared.set", "e", {}, ctx=ctx)
    call("kong.ctx.shared.set", "seq", {1: "x", 2: "y"}, ctx=ctx)
    assert call("kong.ctx.shared.get", "d", ctx=ctx) == {"b": 1}
    assert call("kong.ctx.shared.get", "e", ctx=ctx) == []
    assert call("kong.ctx.shared.get", "seq", ctx=ctx) == ["x", "y"]
    call("kong.ctx.shared.set", "d", None, ctx=ctx)
    assert "d" not in ctx.shared


def test_nginx_vars_ctx_and_timer():
    ctx = make_ctx(raw_query="q=1")
    assert call("kong.nginx.get_var", "request_uri", ctx=ctx) == "/p?q=1"
    assert call("kong.nginx.get_var", "http_x_none", ctx=ctx) is None
    call("kong.nginx.set_ctx", "k", "v", ctx=ctx)
    assert call("kong.nginx.get_ctx", "k", ctx=ctx) == "v"
    assert call("kong.nginx.req_start_time", ctx=ctx) == 1700000000.5
    with pytest.raises(LuaError, match=r"ngx\.timer"):
        call("kong.nginx.get_var", "request_uri", ctx=ctx, phase="log")


def test_node_plugin_and_log_lines():
    ctx = make_ctx()
    ctx.current_plugin = Plugin(id="p-1", name="t-pdk", config={})
    assert call("kong.node.get_id", ctx=ctx) == "node-1"
    assert call("kong.plugin.get_id", ctx=ctx) == "p-1"
    call("kong.log.err", "user ", 42, " ", "1.5", ctx=ctx)
    call("kong.log", "root", ctx=ctx)
    assert ctx.log_lines == [("err", "t-pdk", "user 42 1.5"), ("notice", "t-pdk", "root")]


def test_7_serialize_is_a_json_string_from_the_snapshot_in_log_only():
    ctx = make_ctx(headers=[("X-A", "1")])
    ctx.shared["k"] = "v"
    ctx.snapshot = LogSnapshot.take(ctx, {"request": {"uri": "/a/b"}}, Headers([("X-R", "r")]), 418)
    out = call("kong.log.serialize", ctx=ctx, phase="log")
    assert out == '{"request":{"uri":"\\/a\\/b"}}' and json.loads(out)["request"]["uri"] == "/a/b"
    assert call("kong.response.get_status", ctx=ctx, phase="log") == 418
    assert call("kong.response.get_headers", ctx=ctx, phase="log") == {"x-r": ["r"]}
    assert call("kong.request.get_headers", ctx=ctx, phase="log") == {"x-a": ["1"]}
    assert call("kong.ctx.shared.get", "k", ctx=ctx, phase="log") == "v"
    with pytest.raises(LuaError, match=r"only in: log"):
        call("kong.log.serialize", ctx=ctx)
    with pytest.raises(LuaError, match=r"ngx\.timer"):
        call("kong.request.get_path", ctx=ctx, phase="log")
