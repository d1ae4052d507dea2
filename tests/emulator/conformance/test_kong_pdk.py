"""Kong 3.9.1 kong/pdk/*: what external plugins get back (through mp_rpc.lua's call_pdk_method), checked against
the PDK source and nginx's variable lookup it relies on."""

from __future__ import annotations

import pytest
from emu_support import make_ctx
from kong_emulator.pdk import PDK


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
