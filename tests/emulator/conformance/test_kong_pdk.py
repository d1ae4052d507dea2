"""Kong 3.9.1 kong/pdk/*: what external plugins get back (through mp_rpc.lua's call_pdk_method), checked against
the PDK source and nginx's variable lookup it relies on; and ``kong.ctx.plugin`` as Lua plugins see it."""

from __future__ import annotations

import pytest
import requests
from emu_support import make_ctx
from kong_emulator.pdk import PDK
from kong_emulator.testing import EmulatorProcess


def _call(ctx, method, *args, phase="access"):
    pdk = PDK()
    return pdk.call(pdk.new_call(ctx, phase, "p"), method, list(args))


# 6. kong.request.get_header → kong/tools/http.lua:545-565: ngx.var["http_" .. replace_dashes(name)]. nginx's
# unknown-header variable lowercases each request header name and reads '-' as '_' (ngx_http_variable_unknown_header),
# and Kong serves `underscores_in_headers on` (kong/templates/nginx_kong.lua:30): X_User_Id is $http_x_user_id too.
@pytest.mark.parametrize(
    ("headers", "name", "value"),
    [
        ([("X_User_Id", "spoof")], "X-User-Id", "spoof"),
        ([("x_user_id", "spoof")], "x-user-id", "spoof"),
        ([("X-User-Id", "real")], "x_user_id", "real"),
        ([("X-User-Id", "real"), ("X_User_Id", "spoof")], "X-User-Id", "real"),
        ([("X_User_Id", "spoof"), ("X-User-Id", "real")], "X-User-Id", "real"),
        # "a, b" (nginx joins repeats) → http.lua:560-564 ngx.req.get_headers()[name]: the '-' spelling only
        ([("X_User_Id", "a, b")], "X-User-Id", None),
        ([("X-A", "1")], "X-B", None),
    ],
)
def test_get_header_reads_nginx_http_variable(headers, name, value):
    assert _call(make_ctx(headers=headers), "kong.request.get_header", name) == value


def test_get_headers_keeps_underscore_names_apart():
    # ngx.req.get_headers() lower-cases names but keeps '_' (lua-resty-core request.lua); fix_mmap packs lists
    headers = _call(make_ctx(headers=[("X_User_Id", "s"), ("X-User-Id", "r")]), "kong.request.get_headers")
    assert headers["x_user_id"] == ["s"] and headers["x-user-id"] == ["r"]


def test_get_path_is_kongs_normalize_not_nginx_uri():
    # kong/pdk/request.lua:415-417 get_path = normalize(get_raw_path(), true); kong/tools/uri.lua:48-58 decodes
    # unreserved and "other" bytes but keeps reserved ones encoded (upper-cased): %2F stays, %41 becomes A
    ctx = make_ctx(path="/a/%2f%41//b/./c/../d")
    assert _call(ctx, "kong.request.get_path") == "/a/%2FA/b/d"


def test_forwarded_headers_from_a_trusted_peer_are_read_through_the_same_lookup():
    # request.lua get_forwarded_scheme/host use _REQUEST.get_header (http.lua:545-565): X_Forwarded_Proto counts
    from kong_emulator.pdk import PDK
    from kong_emulator.pdk.base import PDKEnv

    pdk = PDK(PDKEnv(trusted_ips=["10.0.0.0/8"]))
    ctx = make_ctx(headers=[("X_Forwarded_Proto", "https")], client_ip="10.0.0.7")
    assert pdk.call(pdk.new_call(ctx, "access", "p"), "kong.request.get_forwarded_scheme", []) == "https"


# -- kong.ctx.plugin (kong/pdk/ctx.lua) ------------------------------------------------------------------------------

# Before each handler call Kong runs setup_plugin_context (kong/init.lua:263-271, called at 335, 386 and 456), whose
# kong_global.set_named_ctx(kong, "plugin", plugin.handler, ctx) (init.lua:268; kong/global.lua:86-108, 46-55) makes
# ngx.ctx.KONG_NAMESPACES.plugin the plugin's *handler*; kong.ctx.plugin is then ngx.ctx[that handler]
# (kong/pdk/ctx.lua:96-107, 128-140). There is one handler per plugin name (kong/db/dao/plugins.lua:319-349,
# 374-389: handlers[plugin] = handler), so in one request every instance of a plugin shares one table -- the global
# instance that rewrite runs (plugins_iterator's global iterator) and the route instance the later phases run
# (plugins_iterator.lua:372-411 collects the most specific one) -- while another plugin, with its own handler
# (pre-function and post-function are two tables: kong/plugins/pre-function/_handler.lua:100-132), never sees it.
_CTX_PLUGIN_YML = """_format_version: "3.0"
plugins:
- name: pre-function
  config:
    rewrite: ["kong.ctx.plugin.from_rewrite = 'global pre-function'"]
- name: post-function
  config:
    rewrite: ["kong.ctx.plugin.own = 'global post-function'"]
services:
- name: s
  url: UPSTREAM
  routes:
  - name: r
    paths: [/api]
    plugins:
    - name: pre-function
      config:
        access: ["kong.ctx.shared.pre_access = tostring(kong.ctx.plugin.from_rewrite)"]
        header_filter: ["kong.response.set_header('X-Pre-Header-Filter', tostring(kong.ctx.plugin.from_rewrite))"]
    - name: post-function
      config:
        access:
        - "return kong.response.exit(200, {pre_access = kong.ctx.shared.pre_access,
            post_own = tostring(kong.ctx.plugin.own), post_sees_pre = tostring(kong.ctx.plugin.from_rewrite)})"
"""


def test_kong_ctx_plugin_is_shared_by_every_instance_of_a_plugin_in_a_request():
    with EmulatorProcess(_CTX_PLUGIN_YML.replace("UPSTREAM", "http://127.0.0.1:9/")) as gw:
        resp = requests.get(f"{gw.url}/api", timeout=10)
    assert resp.status_code == 200, resp.text
    assert resp.json() == {
        "pre_access": "global pre-function",  # the route instance's access reads the global instance's rewrite
        "post_own": "global post-function",  # the same for post-function, in its own table
        "post_sees_pre": "nil",  # another plugin's table is not this one
    }
    assert resp.headers["X-Pre-Header-Filter"] == "global pre-function"  # and so does its header_filter
