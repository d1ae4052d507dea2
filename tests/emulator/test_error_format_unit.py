"""One error format, in-process: kong.conf's error_template_* as kong/tools/http.lua uses them, their relocation for
local runs, and sv-edge's RFC 9457 formatting (kong-plugins/kong/plugins/sv-edge/problem.lua, run as Kong runs the
Lua plugin) over header_filter/body_filter chunks."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest
from emu_support import External, make_ctx
from kong_emulator.config.conf import load_kong_conf
from kong_emulator.config.entities import Plugin
from kong_emulator.config.errors import ConfigError
from kong_emulator.config.plugin_schema import normalize_config
from kong_emulator.native import NativeRunner, native_infos
from kong_emulator.native.lua_plugins import load_infos
from kong_emulator.runloop.context import ExitResponse, Headers
from kong_emulator.tools import kong_errors
from run_stack import IMAGE_ERROR_TEMPLATES, local_environ, local_overrides

REPO = Path(__file__).resolve().parents[2]
TEMPLATES = REPO / "kong-plugins" / "error-templates"
JSON_TYPE = "application/json; charset=utf-8"


@pytest.fixture
def templates():
    """Install kong.conf keys for the test; Kong's defaults again afterwards."""

    def install(**raw):
        kong_errors.configure(SimpleNamespace(raw=raw))

    yield install
    kong_errors.configure(SimpleNamespace(raw={}))


# -- error_template_* ------------------------------------------------------------------------------------------


def test_kongs_own_templates_without_configuration(templates):
    templates()
    out = kong_errors.kong_error(404, kong_errors.NO_ROUTE, "rid-1", None, source="exit")
    assert out.body == b'{\n  "message":"no Route matched with those values",\n  "request_id":"rid-1"\n}'
    assert out.headers.get("Content-Type") == JSON_TYPE


def test_a_custom_json_template_gets_message_and_request_id_only(templates):
    templates(error_template_json=str(TEMPLATES / "problem.json"))
    out = kong_errors.kong_error(503, kong_errors.NO_PEER, "rid-2", None, source="exit")
    body = json.loads(out.body)
    assert body == {
        "type": "https://docs.storyverse.example/problems/gateway-error",
        "title": "Gateway Error",
        "code": "gateway_error",
        "detail": "failure to get a peer from the ring-balancer",
        "request_id": "rid-2",
    }
    assert out.headers.get("Content-Type") == JSON_TYPE  # a template cannot change the Content-Type


def test_handler_errors_follow_error_default_type_then_the_format_template(templates, tmp_path):
    html = tmp_path / "e.html"
    html.write_text("<p>%s (%s) 100%%</p>")
    templates(error_default_type="text/html", error_template_html=str(html))
    ctx = make_ctx()
    out = kong_errors.handler_error(ctx, 502)  # no Accept, no Content-Type: error_default_type
    assert out.headers.get("Content-Type") == "text/html; charset=utf-8"
    assert out.body == b"<p>An invalid response was received from the upstream server (rid-1) 100%</p>"
    out = kong_errors.handler_error(make_ctx(headers=[("Accept", "application/json")]), 504)
    assert out.body.startswith(b'{\n  "message":"The upstream server is timing out"')  # json: Kong's own


def test_a_missing_template_is_logged_once_and_kongs_own_is_used(templates, caplog):
    templates(error_template_json="/nonexistent/problem.json")
    with caplog.at_level(logging.ERROR, logger="kong_emulator.kong"):
        first = kong_errors.kong_error(404, None, "r", None)
        kong_errors.kong_error(404, None, "r", None)
    assert first.body == b'{\n  "message":"Not found",\n  "request_id":"r"\n}'
    lines = [r.getMessage() for r in caplog.records if "custom json error template" in r.getMessage()]
    assert lines == ["[kong] failed reading the custom json error template: file not found"]


def test_a_template_is_read_once(templates, tmp_path):
    path = tmp_path / "t.json"
    path.write_text('{"m":"%s"}')
    templates(error_template_json=str(path))
    assert kong_errors.kong_error(400, "a", "r", None).body == b'{"m":"a"}'
    path.write_text('{"changed":"%s"}')
    assert kong_errors.kong_error(400, "b", "r", None).body == b'{"m":"b"}'  # Kong caches it per worker


def test_lua_format_semantics():
    assert kong_errors.lua_format("%s-%s", "a", "b", "ignored") == "a-b"
    assert kong_errors.lua_format("%%s %s", "x") == "%s x"
    assert kong_errors.lua_format("%5s|%d", "ab", "7") == "   ab|7"
    with pytest.raises(ValueError, match=r"bad argument #4 to 'format' \(no value\)"):
        kong_errors.lua_format("%s %s %s", "a", "b")
    with pytest.raises(ValueError, match="invalid option '%y'"):
        kong_errors.lua_format("%y", "a")


def test_a_template_lua_cannot_format_falls_back_to_kongs(templates, tmp_path, caplog):
    path = tmp_path / "t.json"
    path.write_text("%s %s %s")
    templates(error_template_json=str(path))
    with caplog.at_level(logging.ERROR, logger="kong_emulator.kong"):
        out = kong_errors.kong_error(404, None, "r", None)
    assert out.body.startswith(b'{\n  "message":"Not found"')
    assert "bad argument #4 to 'format' (no value)" in caplog.text


def test_shipped_template_is_one_json_object_with_two_placeholders():
    text = (TEMPLATES / "problem.json").read_text()
    assert text.count("%s") == 2 and text.replace("%%", "").count("%") == 2
    body = json.loads(kong_errors.lua_format(text, "no Route matched with those values", "abc"))
    assert body["detail"] == "no Route matched with those values" and body["request_id"] == "abc"
    assert body["code"] == "gateway_error" and body["type"].endswith("/gateway-error")


# -- kong.conf keys and their relocation ---------------------------------------------------------------------------


def test_conf_defaults_are_kongs():
    conf = load_kong_conf(None, {})
    assert conf.raw["error_default_type"] == "text/plain"
    assert {conf.raw[f"error_template_{f}"] for f in ("html", "json", "xml", "plain")} == {"NONE"}
    conf = load_kong_conf(None, {"KONG_ERROR_TEMPLATE_JSON": "/x/p.json"})
    assert conf.raw["error_template_json"] == "/x/p.json"
    with pytest.raises(ConfigError, match=r"error_default_type has an invalid value: 'application/problem\+json' "
                       r"\(application/json, application/xml, text/html, text/plain\)"):  # fmt: skip
        load_kong_conf(None, {"KONG_ERROR_DEFAULT_TYPE": "application/problem+json"})


def test_image_template_paths_are_relocated(tmp_path):
    values = {
        "error_template_json": IMAGE_ERROR_TEMPLATES + "problem.json",
        "error_template_html": "/etc/kong/other.html",  # not the image's directory: left alone
        "error_default_type": "application/json",
    }
    env = local_overrides(values, tmp_path, tmp_path, templates_dir=TEMPLATES)
    assert env["KONG_ERROR_TEMPLATE_JSON"] == str(TEMPLATES.resolve() / "problem.json")
    assert "KONG_ERROR_TEMPLATE_HTML" not in env and "KONG_ERROR_DEFAULT_TYPE" not in env
    assert "KONG_ERROR_TEMPLATE_JSON" not in local_overrides(values, tmp_path, tmp_path)  # opt-in


def test_local_environ_points_the_repos_template_keys_at_the_checkout(tmp_path):
    repo = tmp_path / "repo"
    (repo / "kong-plugins" / "error-templates").mkdir(parents=True)
    (repo / "kong.conf").write_text(f"error_template_json = {IMAGE_ERROR_TEMPLATES}problem.json  # problem docs\n")
    env = local_environ(repo, tmp_path / "prefix")
    assert env["KONG_ERROR_TEMPLATE_JSON"] == str(
        (repo / "kong-plugins" / "error-templates").resolve() / "problem.json"
    )


# -- sv-edge's error format -------------------------------------------------------------------------------------


EDGE = load_infos(["sv-edge"], f"{REPO / 'kong-plugins'}/?.lua")["sv-edge"]


@pytest.fixture
def runner():
    return NativeRunner(External(), infos={**native_infos(), "sv-edge": EDGE})


def _plugin(**phases) -> Plugin:
    config = normalize_config(native_infos()["post-function"], phases, "test")
    return Plugin(id=str(uuid.uuid4()), name="post-function", config=config)


def _edge() -> Plugin:
    return Plugin(id=str(uuid.uuid4()), name="sv-edge", config=normalize_config(EDGE, {}, "test"))


def _filter(runner, plugin, ctx, status, headers, chunks, *, source="service", exit_=None):
    """Kong.header_filter then Kong.body_filter over `chunks` (the last one eof): (headers, body)."""
    ctx.exit = exit_
    ctx.response.status, ctx.response.headers, ctx.response.source = status, Headers(headers), source
    ctx.phase = "header_filter"
    asyncio.run(runner.run_phase(plugin, "header_filter", ctx))
    out = []
    for i, chunk in enumerate(chunks):
        arg = [chunk, i == len(chunks) - 1]
        ctx.body_filter_arg = arg
        ctx.phase = "body_filter"
        asyncio.run(runner.run_phase(plugin, "body_filter", ctx))
        out.append(arg[0])
        if arg[1]:
            break
    del ctx.body_filter_arg
    return ctx.response.headers, b"".join(out)


def test_a_2xx_is_not_touched(runner):
    plugin = _edge()
    headers, body = _filter(runner, plugin, make_ctx(), 200, [("Content-Type", "text/plain"), ("Content-Length", "4")],
                            [b"ok", b"ok", b""])  # fmt: skip
    assert body == b"okok" and headers.get("Content-Length") == "4" and headers.get("Content-Type") == "text/plain"


def test_an_upstream_error_in_chunks_becomes_a_problem(runner):
    plugin = _edge()
    ctx = make_ctx()
    ctx.shared["sv_request_id"] = "rid-sv"
    headers, body = _filter(runner, plugin, ctx, 422,
                            [("Content-Type", "application/json"), ("Content-Length", "33"),
                             ("Content-Encoding", "identity")],
                            [b'{"message":', b'"title is required"}', b""])  # fmt: skip
    assert headers.get("Content-Type") == "application/problem+json"
    assert headers.get("Content-Length") is None and headers.get("Content-Encoding") is None
    assert json.loads(body) == {
        "type": "https://docs.storyverse.example/problems/unprocessable-content",
        "title": "Unprocessable Content",
        "status": 422,
        "code": "unprocessable_content",
        "detail": "title is required",
        "request_id": "rid-sv",
    }


def test_an_upstream_5xx_body_never_leaks(runner):
    plugin = _edge()
    _, body = _filter(runner, plugin, make_ctx(), 500, [("Content-Type", "text/html")],
                            [b"<pre>Traceback: secret</pre>", b""])  # fmt: skip
    doc = json.loads(body)
    assert doc["code"] == "upstream_error" and doc["detail"] == "The upstream service responded with 500."
    assert doc["request_id"] == "rid-1"  # ngx.var.kong_request_id


def test_a_kong_error_keeps_the_templates_detail(runner):
    plugin = _edge()
    template = (TEMPLATES / "problem.json").read_text()
    rendered = kong_errors.lua_format(template, "The upstream server is timing out", "rid-1").encode()
    exit_ = ExitResponse(504, rendered, Headers([("Content-Type", JSON_TYPE)]), source="error")
    headers, body = _filter(runner, plugin, make_ctx(), 504, [("Content-Type", JSON_TYPE)], [rendered, b""],
                            source="error", exit_=exit_)  # fmt: skip
    assert headers.get("Content-Type") == "application/problem+json"
    doc = json.loads(body)
    assert (doc["status"], doc["code"], doc["title"]) == (504, "upstream_timeout", "Gateway Timeout")
    assert doc["detail"] == "The upstream server is timing out"


def test_a_problem_document_from_a_backend_gets_only_whats_missing(runner):
    plugin = _edge()
    ctype = [("Content-Type", "Application/Problem+JSON; charset=utf-8")]
    _, body = _filter(runner, plugin, make_ctx(), 404, ctype, [b' {"title":"Not Found","status":404} ', b""])
    assert json.loads(body) == {"title": "Not Found", "status": 404, "code": "not_found", "request_id": "rid-1"}
    _, body = _filter(runner, plugin, make_ctx(), 409, ctype, [b"{}", b""])
    assert json.loads(body) == {"code": "conflict", "request_id": "rid-1"}
    full = b'{"code":"x","request_id":"y"}'
    _, body = _filter(runner, plugin, make_ctx(), 400, [*ctype, ("Content-Length", "29")], [full, b""])
    assert body == full


def test_a_problem_document_from_kong_or_a_plugin_is_left_alone(runner):
    plugin = _edge()
    doc = b'{"code":"quota_exceeded"}'
    exit_ = ExitResponse(429, doc, Headers([("Content-Type", "application/problem+json")]), source="exit")
    headers, body = _filter(runner, plugin, make_ctx(), 429,
                            [("Content-Type", "application/problem+json"), ("Content-Length", "25")],
                            [doc, b""], source="exit", exit_=exit_)  # fmt: skip
    assert body == doc and headers.get("Content-Length") == "25"


# -- the runtime pieces sv-edge relies on -----------------------------------------------------------------------


def test_ngx_header_reads_and_writes_until_header_filter_ends(runner):
    plugin = _plugin(
        header_filter=[
            "ngx.header.x_seen = ngx.header['Content-Type'] .. '|' .. tostring(ngx.header['X-None'])\n"
            "ngx.header['X-Multi'] = { 'a', 'b' }\n"
            "ngx.header['Content-Length'] = nil"
        ],
        body_filter=["local ok, err = pcall(function() ngx.header['X-Late'] = '1' end) ngx.arg[1] = err"],
    )
    headers, body = _filter(runner, plugin, make_ctx(), 200, [("Content-Type", "a/b"), ("Content-Length", "2")],
                            [b""])  # fmt: skip
    assert headers.get("X-Seen") == "a/b|nil" and headers.get_all("X-Multi") == ["a", "b"]
    assert headers.get("Content-Length") is None
    assert body.endswith(b"attempt to set ngx.header.X-Late after sending out response headers")


def test_get_raw_body_buffers_the_chunks_like_kong(runner):
    plugin = _plugin(
        body_filter=[
            "local body = kong.response.get_raw_body()\n"
            "if body then kong.response.set_raw_body('[' .. body .. ']') end\n"
            "kong.ctx.plugin.calls = (kong.ctx.plugin.calls or 0) + 1"
        ]
    )
    _, body = _filter(runner, plugin, make_ctx(), 200, [], [b"ab", b"cd", b""])
    assert body == b"[abcd]"


def test_setting_eof_truncates_the_body(runner):
    plugin = _plugin(body_filter=["ngx.arg[2] = true"])
    _, body = _filter(runner, plugin, make_ctx(), 200, [], [b"first", b"second", b""])
    assert body == b"first"
