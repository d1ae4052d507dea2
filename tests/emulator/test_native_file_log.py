"""The native ``file-log`` plugin (Kong 3.9): one ``kong.log.serialize()`` JSON line per request, Kong's redaction
of ``Authorization`` (and of nothing else), ``custom_fields_by_lua`` through the LuaJIT runtime, ``reopen``."""

from __future__ import annotations

import json
import os
import time

import pytest
import requests
from kong_emulator.config.errors import ConfigError
from kong_emulator.config.plugin_schema import normalize_config
from kong_emulator.native import native_infos
from kong_emulator.native.file_log import FileLog, apply_serialize_values
from kong_emulator.testing import EmulatorProcess
from sample_backend.testing import running

TOKEN = "eyJhbGciOiJSUzI1NiJ9.c2VjcmV0LXBheWxvYWQ.c2lnbmF0dXJl"


def test_info_and_schema():
    info = native_infos()["file-log"]
    assert info.priority == 9 and info.phases == ("log",)
    conf = normalize_config(info, {"path": "/tmp/x.log"}, "plugins[0]")
    assert conf == {"path": "/tmp/x.log", "reopen": False, "custom_fields_by_lua": None}
    for bad in ("/tmp/a*b.log", "/tmp/a&b", "/tmp/100%", "/tmp/`x`"):
        with pytest.raises(ConfigError, match="not a valid filename"):
            normalize_config(info, {"path": bad}, "plugins[0]")
    with pytest.raises(ConfigError, match="required field missing"):
        normalize_config(info, {}, "plugins[0]")


def test_serialize_values_nest_and_remove():
    record = {"request": {"id": "x", "headers": {"a": "1"}}}
    out = apply_serialize_values(record, [("user.id", "u-1"), ("request.headers.a", None), ("top", 1)])
    assert out == {"request": {"id": "x", "headers": {}}, "user": {"id": "u-1"}, "top": 1}


def test_reopen_follows_a_rotated_file(tmp_path):
    path = tmp_path / "access.log"
    plugin_log = FileLog()
    plugin_log.write({"path": str(path), "reopen": True}, "one\n")
    os.rename(path, tmp_path / "access.log.1")
    plugin_log.write({"path": str(path), "reopen": True}, "two\n")
    assert path.read_text() == "two\n" and (tmp_path / "access.log.1").read_text() == "one\n"
    kept = FileLog()
    other = tmp_path / "kept.log"
    kept.write({"path": str(other), "reopen": False}, "one\n")
    os.rename(other, tmp_path / "kept.log.1")
    kept.write({"path": str(other), "reopen": False}, "two\n")  # the cached descriptor: still the old file
    assert not other.exists() and (tmp_path / "kept.log.1").read_text() == "one\ntwo\n"
    kept.close()
    plugin_log.close()


def kong_yml(backend: str, log_path: str) -> str:
    return f"""
_format_version: "3.0"
services:
  - name: echo
    url: {backend}/__echo
    routes:
      - name: universes
        paths: ["/universes"]
      - name: denied
        paths: ["/denied"]
        plugins:
          - name: pre-function
            config:
              access: ["return kong.response.exit(403, {{message = 'Forbidden'}})"]
plugins:
  - name: file-log
    config:
      path: {log_path}
      custom_fields_by_lua:
        user_id: "return kong.request.get_header('X-Test-User')"
        gateway: "return 'storyverse'"
"""


@pytest.fixture(scope="module")
def backend():
    with running("echo") as urls:
        yield urls["echo"]


@pytest.fixture(scope="module")
def gw(backend, tmp_path_factory):
    log_path = tmp_path_factory.mktemp("filelog") / "access.log"
    gw = EmulatorProcess(kong_yml(backend, str(log_path)), strict=True).start()
    gw.log_file = log_path
    try:
        yield gw
        assert not gw.strict_failures(), gw.strict_failures()
    finally:
        gw.stop()


def _line_for(gw, request_id: str, seconds: float = 5.0) -> dict:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if gw.log_file.exists():
            for line in gw.log_file.read_text().splitlines():
                record = json.loads(line)
                if record["request"]["id"] == request_id:
                    return record
        time.sleep(0.05)
    raise AssertionError(f"no file-log line for {request_id}: {gw.output()[-2000:]}")


def test_one_line_per_request_with_the_issue_fields(gw):
    resp = requests.get(
        gw.url + "/universes/7?page=2",
        headers={"Authorization": f"Bearer {TOKEN}", "X-Test-User": "u-42"},
        timeout=5,
    )
    assert resp.status_code == 200
    rid = resp.headers["X-Kong-Request-Id"]
    record = _line_for(gw, rid)
    assert record["request"]["method"] == "GET" and record["request"]["uri"] == "/universes/7?page=2"
    assert record["route"]["name"] == "universes" and record["service"]["name"] == "echo"
    assert record["response"]["status"] == 200 and record["response"]["size"] > 0
    assert record["request"]["size"] >= 0
    assert set(record["latencies"]) >= {"kong", "proxy", "request"} and record["latencies"]["proxy"] >= 0
    assert record["user_id"] == "u-42" and record["gateway"] == "storyverse"  # custom_fields_by_lua
    assert record["source"] == "service" and record["upstream_uri"] == "/__echo/7?page=2"
    # Kong's serialize redacts Authorization; the token itself never reaches the file
    assert record["request"]["headers"]["authorization"] == "REDACTED"
    assert TOKEN not in gw.log_file.read_text()


def test_exits_are_logged_and_query_tokens_are_not_redacted(gw):
    resp = requests.get(gw.url + "/denied?access_token=leaky", timeout=5)
    assert resp.status_code == 403
    record = _line_for(gw, resp.headers["X-Kong-Request-Id"])
    assert record["response"]["status"] == 403 and record["source"] == "exit"
    assert record["latencies"]["proxy"] == -1  # never proxied
    assert "user_id" not in record  # nil: the header was absent
    # Kong redacts only the Authorization/Proxy-Authorization *headers*: never put tokens in query strings
    assert record["request"]["querystring"] == {"access_token": "leaky"}
