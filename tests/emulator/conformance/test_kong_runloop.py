"""Kong 3.9.1's request runloop around the plugins: nginx's access log (kong/templates/nginx_kong.lua:66-69,
108-116; kong/cmd/utils/prefix_handler.lua:261-271) and body_filter over a body in several chunks
(kong/runloop/handler.lua body_filter, nginx's proxy buffers)."""

from __future__ import annotations

import json
import re
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
