"""Kong 3.9.1's request runloop around the plugins: nginx's access log (kong/templates/nginx_kong.lua:66-69,
108-116; kong/cmd/utils/prefix_handler.lua:261-271) and body_filter over a body in several chunks
(kong/runloop/handler.lua body_filter, nginx's proxy buffers)."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import requests
from kong_emulator.config.conf import load_kong_conf
from kong_emulator.testing import EmulatorProcess
from proxy_support import Upstream

REPO = Path(__file__).resolve().parents[3]
TOKEN = "s3cr3t-t0ken-value"


def _yml(up: Upstream, plugins: str = "") -> str:
    return (
        '_format_version: "3.0"\nservices:\n- name: s\n  url: ' + up.url + "/echo\n  routes:\n  - name: r\n"
        "    paths: [/api]\n" + plugins
    )


def _access_lines(gw: EmulatorProcess) -> list[str]:
    return [line for line in gw.output().splitlines() if "kong_emulator.access" in line]


def test_kongs_default_access_log_has_the_whole_request_line():
    # nginx_kong.lua:66-69 kong_log_format '... "$request" ...': the query string, a token in it too
    up = Upstream().start()
    try:
        with EmulatorProcess(_yml(up)) as gw:
            assert requests.get(f"{gw.url}/api?access_token={TOKEN}", timeout=10).status_code == 200
            lines = _access_lines(gw)
    finally:
        up.stop()
    assert len(lines) == 1
    assert f'"GET /api?access_token={TOKEN} HTTP/1.1" 200 ' in lines[0]
    assert re.search(r'kong_request_id: "[0-9a-f]{32}"$', lines[0])


def test_our_kong_conf_access_log_is_off_and_its_format_never_has_the_query_string():
    # kong.conf: proxy_access_log = off (file-log's JSON record is the one line per request); an operator who turns
    # it on with the sv_access format (prefix_handler.lua:266-270 custom format) logs "$request_method $uri
    # $server_protocol", never the query string
    raw = load_kong_conf(str(REPO / "kong.conf"), {}).raw
    assert raw["proxy_access_log"] == "off"
    keys = {"proxy_access_log": "/dev/stdout sv_access", "nginx_http_log_format": raw["nginx_http_log_format"]}
    up = Upstream().start()
    try:
        with EmulatorProcess(_yml(up), conf_extra=keys) as gw:
            assert requests.get(f"{gw.url}/api/x?access_token={TOKEN}", timeout=10).status_code == 200
            lines = _access_lines(gw)
            output = gw.output()
    finally:
        up.stop()
    assert len(lines) == 1 and '"GET /api/x HTTP/1.1" 200 ' in lines[0]
    assert TOKEN not in output


def test_body_filter_sees_a_proxied_body_in_several_chunks():
    # nginx passes the upstream body to the body filters buffer by buffer (proxy_buffers: one 4 KB page each), then
    # a last buffer with ngx.arg[2] = true; every chunk runs every plugin's body_filter
    chunk_marker = 'if not ngx.arg[2] then ngx.arg[1] = "[" .. #ngx.arg[1] .. "]" else ngx.arg[1] = "[eof]" end'
    plugins = (
        "    plugins:\n    - name: post-function\n      config:\n        body_filter:\n        - "
        + json.dumps(chunk_marker)
        + "\n"
    )
    up = Upstream().start()
    try:
        with EmulatorProcess(_yml(up, plugins)) as gw:
            payload = "x" * 20000
            resp = requests.post(f"{gw.url}/api", data=payload, timeout=10)
    finally:
        up.stop()
    sizes = re.findall(r"\[(\d+|eof)\]", resp.text)
    assert sizes[-1] == "eof" and len(sizes) >= 6
    assert all(0 < int(s) <= 4096 for s in sizes[:-1])
    assert sum(int(s) for s in sizes[:-1]) > 20000  # the whole echoed body, in order, chunk by chunk


# -- a Lua error in an access handler (kong/init.lua:360-430, 497-509, 1203-1214) --------------------------------------

RAISE = "local t = nil; return t.boom"


def _raising(*post_chunks: tuple[str, str]) -> str:
    """pre-function (PRIORITY 1000000) raises in access; post-function (PRIORITY -1000) has the given chunks."""
    post = "".join(f"\n        {phase}: [{json.dumps(chunk)}]" for phase, chunk in post_chunks)
    plugins = f"    plugins:\n    - name: pre-function\n      config:\n        access: [{json.dumps(RAISE)}]\n"
    return plugins + (f"    - name: post-function\n      config:{post}\n" if post_chunks else "")


def test_a_lua_error_in_access_is_kong_response_error_500_from_the_accept_template():
    # init.lua:392-414: the handler runs in a coroutine; its error is kong.log.err'd and becomes
    # ctx.delayed_response = {500, {message = "An unexpected error occurred"}} with ctx.KONG_UNEXPECTED = true;
    # init.lua:1205-1214 + 506-508 flush it as kong.response.error(500, message): the template of the Accept type
    # (pdk/response.lua:1141-1160, tools/http.lua:453-488), JSON without Accept, with the request id
    up = Upstream().start()
    try:
        with EmulatorProcess(_yml(up, _raising())) as gw:
            plain = requests.get(f"{gw.url}/api", headers={"Accept": "text/plain"}, timeout=10)
            default = requests.get(f"{gw.url}/api", headers={"Accept": None}, timeout=10)  # no Accept
            output = gw.output()
    finally:
        up.stop()
    assert plain.status_code == 500 and plain.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert plain.text == f"An unexpected error occurred\nrequest_id: {plain.headers['X-Kong-Request-Id']}\n"
    assert default.status_code == 500 and default.headers["Content-Type"] == "application/json; charset=utf-8"
    rid = default.headers["X-Kong-Request-Id"]
    assert default.text == '{\n  "message":"An unexpected error occurred",\n  "request_id":"' + rid + '"\n}'
    assert "attempt to index local 't' (a nil value)" in output  # init.lua:406 kong.log.err(cerr)
    assert up.hits == 0  # nothing proxied


def test_after_a_lua_error_in_access_the_collected_filters_and_log_run_and_may_change_the_status():
    # init.lua:379-423: once ctx.delayed_response is set no later access handler runs, but the iterator goes on
    # collecting (plugins_iterator.lua:372-411), so every plugin of the request has its header_filter, body_filter
    # and log run on the 500 (init.lua:1641, 1713, 1839), with get_source() "error" (pdk/response.lua:353-355).
    # header_filter may still set the status (pdk/response.lua:379-394; nginx sends the headers after the Lua
    # header filter: lua-nginx-module t/015-status.t TEST 12, 16), and body_filter and log read the new one.
    chunks = (
        ("access", "kong.response.set_header('X-Post-Access', 'ran')"),
        (
            "header_filter",
            "kong.response.set_header('X-Seen', kong.response.get_status() .. ' ' .. kong.response.get_source())\n"
            "if kong.response.get_status() == 500 then kong.response.set_status(503) end",
        ),
        (
            "body_filter",
            "if ngx.arg[2] then ngx.arg[1] = 'status=' .. kong.response.get_status() else ngx.arg[1] = nil end",
        ),
        ("log", "kong.log.err('log phase status=', kong.response.get_status())"),
    )
    up = Upstream().start()
    try:
        with EmulatorProcess(_yml(up, _raising(*chunks))) as gw:
            resp = requests.get(f"{gw.url}/api", timeout=10)
            deadline = time.monotonic() + 5
            while "log phase status=" not in gw.output() and time.monotonic() < deadline:
                time.sleep(0.05)
            output = gw.output()
    finally:
        up.stop()
    assert "X-Post-Access" not in resp.headers
    assert resp.headers["X-Seen"] == "500 error"
    assert (resp.status_code, resp.text) == (503, "status=503")
    assert "log phase status=503" in output


def test_a_lua_error_in_rewrite_is_the_error_page_500_of_kong_error_handlers():
    # init.lua:341: rewrite handlers run without a coroutine, so the error leaves Kong.rewrite; nginx's
    # `error_page 500 ... /kong_error_handler` (nginx_kong.lua:102, 396-407) runs Kong.handle_error (init.lua:1855-1864)
    # and kong/error_handlers.lua:50-91 takes the type from Accept, else the request's Content-Type
    plugins = f"plugins:\n- name: pre-function\n  config:\n    rewrite: [{json.dumps(RAISE)}]\n"
    up = Upstream().start()
    try:
        with EmulatorProcess(_yml(up) + plugins) as gw:
            resp = requests.post(
                f"{gw.url}/api", data="<p/>", headers={"Content-Type": "text/html", "Accept": None}, timeout=10
            )
    finally:
        up.stop()
    assert resp.status_code == 500 and resp.headers["Content-Type"] == "text/html; charset=utf-8"
    assert "<p>An unexpected error occurred.</p>" in resp.text
    assert f"request_id: {resp.headers['X-Kong-Request-Id']}" in resp.text
