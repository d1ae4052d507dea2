"""pre-function / post-function through the real emulator process, around a real Python plugin server (t-marker),
in front of the sample backend, with sv-edge (our Lua plugin, kong-plugins/kong/plugins/sv-edge) as the guard that
requires t-marker's sv-jwt-shaped decision mark."""

from __future__ import annotations

import os
import signal
import textwrap
import time
from pathlib import Path

import pytest
import requests
from kong_emulator.testing import EmulatorProcess, PluginEntry
from sample_backend.testing import running

HERE = Path(__file__).resolve().parent
MARKER = PluginEntry("t-marker", HERE / "plugins" / "t_marker.py")
EDGE_CONF = {"plugins": "bundled,sv-edge,t-marker", "lua_package_path": f"{HERE.parents[1] / 'kong-plugins'}/?.lua;;"}


def _block(code: str, indent: int) -> str:
    return textwrap.indent(code, " " * indent)


def kong_yml(backend: str) -> str:
    return f"""
_format_version: "3.0"
services:
  - name: echo
    url: {backend}/__echo
    routes:
      - name: protected
        paths: ["/protected"]
      - name: public
        paths: ["/public"]
        plugins:
          - name: post-function
            config:
              access: ["kong.service.request.set_header('X-Public', 'yes')"]
          - name: sv-edge
            config: {{require: []}}
      - name: boom
        paths: ["/boom"]
        plugins:
          - name: pre-function
            config:
              access: ["local t = nil; return t.boom"]
          - name: sv-edge
            config: {{require: []}}
      - name: guarded-boom
        paths: ["/guarded-boom"]
        plugins:
          - name: pre-function
            config:
              access: ["local t = nil; return t.boom"]
plugins:
  - name: t-marker
  - name: sv-edge
    config: {{require: [sv-jwt]}}
  - name: pre-function
    config:
      access:
        - |
          local order = kong.ctx.shared.order or {{}}
          order[#order + 1] = "pre-function"
          kong.ctx.shared.order = order
          kong.service.request.set_header("X-Pre-Saw-Identity", tostring(kong.ctx.shared.sv_identity ~= nil))
  - name: post-function
    config:
      access:
        - |
          local order = kong.ctx.shared.order
          order[#order + 1] = "post-function"
          kong.service.request.set_header("X-Order", table.concat(order, ","))
      header_filter:
        - "kong.response.set_header('X-Post-Status', kong.response.get_status())"
      log:
        - |
          local id = kong.ctx.shared.sv_identity
          kong.log.notice("native-log status=", kong.response.get_status(), " path=", kong.request.get_path(),
                          " sub=", type(id) == "table" and id.sub or "-")
"""


@pytest.fixture(scope="module")
def backend():
    with running("echo") as urls:
        yield urls["echo"]


@pytest.fixture(scope="module")
def gw(backend):
    gw = EmulatorProcess(kong_yml(backend), [MARKER], strict=True, conf_extra=EDGE_CONF).start()
    try:
        yield gw
        assert not gw.strict_failures(), gw.strict_failures()
    finally:
        gw.stop()


def _upstream_headers(resp) -> dict[str, str]:
    return {k.lower(): v for k, v in resp.json()["request"]["headers"].items()}


def test_chunks_run_in_priority_order_around_a_python_plugin(gw):
    resp = requests.get(gw.url + "/protected", headers={"X-Test-Auth": "yes"}, timeout=10)
    assert resp.status_code == 200, resp.text
    sent = _upstream_headers(resp)
    # pre-function (1000000) → t-marker (1450, Python, appends to the Lua-made list) → post-function (-1000)
    assert sent["x-order"] == "pre-function,t-marker,post-function"
    assert sent["x-pre-saw-identity"] == "false"  # pre-function ran before the identity existed
    assert resp.headers["X-Post-Status"] == "200"  # header_filter, in the emulator's response step


def test_guard_lets_an_authenticated_request_through_and_log_reads_the_snapshot(gw):
    resp = requests.get(gw.url + "/protected/logme", headers={"X-Test-Auth": "yes"}, timeout=10)
    assert resp.status_code == 200
    deadline = time.monotonic() + 5
    while "native-log status=200 path=/protected/logme sub=u-1" not in gw.output():
        assert time.monotonic() < deadline, gw.output()[-3000:]
        time.sleep(0.05)


@pytest.mark.parametrize("mark", [None, "truthy", "no"])
def test_guard_answers_503_problem_without_sv_jwts_mark(gw, mark):
    headers = {"X-Test-Auth": mark} if mark else {}
    resp = requests.get(gw.url + "/protected", headers=headers, timeout=10)
    assert resp.status_code == 503
    assert resp.headers["Content-Type"] == "application/problem+json"
    body = resp.json()
    assert body["code"] == "plugin_unavailable" and body["status"] == 503
    assert body["type"].endswith("/plugin-unavailable") and body["title"] == "Service Unavailable"
    assert resp.headers["Retry-After"] == "5"
    assert body["request_id"] == resp.headers["X-Kong-Request-Id"]
    assert resp.headers["X-Post-Status"] == "503"  # header_filter runs on exits too, as in Kong


def test_public_route_overrides_the_global_guard(gw):
    resp = requests.get(gw.url + "/public", timeout=10)
    assert resp.status_code == 200
    assert _upstream_headers(resp)["x-public"] == "yes"


def test_a_chunk_that_raises_is_kongs_500_on_a_route_without_a_guard(gw):
    resp = requests.get(gw.url + "/boom", headers={"X-Test-Auth": "yes"}, timeout=10)
    assert resp.status_code == 500  # Kong's {"message": ...}, made a problem document by sv-edge's header/body_filter
    doc = resp.json()
    assert (doc["code"], doc["detail"]) == ("gateway_error", "An unexpected error occurred")
    assert "attempt to index local 't' (a nil value)" in gw.output()


def test_a_plugin_that_raises_before_the_guard_is_the_guards_503(gw):
    """Kong's 500 for a Lua error before sv-edge's access ran (kong/init.lua:392-414), on a guarded route: sv-edge's
    header_filter answers the guard's 503 instead (the request was never checked)."""
    resp = requests.get(gw.url + "/guarded-boom", headers={"X-Test-Auth": "yes"}, timeout=10)
    assert resp.status_code == 503, resp.text
    assert resp.headers["Content-Type"] == "application/problem+json" and resp.headers["Retry-After"] == "5"
    doc = resp.json()
    assert (doc["code"], doc["status"], doc["title"]) == ("plugin_unavailable", 503, "Service Unavailable")
    assert doc["type"].endswith("/plugin-unavailable") and doc["request_id"] == resp.headers["X-Kong-Request-Id"]
    assert resp.headers["X-Post-Status"] == "503"  # post-function's header_filter (priority -1000) reads the new one
    assert "sv-edge guard: a plugin failed before the guard" in gw.output()


def test_guard_fails_closed_when_the_plugin_server_hangs(backend):
    """docs/architecture.md §2: a hung plugin server stalls the event until the read timeout, then Kong lets the
    request through.

    Not strict mode on purpose: strict mode turns that fail-open into a loud emulator 500; here the emulator must
    behave like Kong (log and go on) so that the guard is what stops the request.
    """
    extra = {"emulator_reply_timeout": "1", "nginx_worker_processes": "1", **EDGE_CONF}  # one worker: started
    gw = EmulatorProcess(kong_yml(backend), [MARKER], strict=False, conf_extra=extra)
    gw.start()
    pid = None
    try:
        assert requests.get(gw.url + "/protected", headers={"X-Test-Auth": "yes"}, timeout=10).status_code == 200
        pid = _child_running(gw.proc.pid, "t_marker.py")
        os.kill(pid, signal.SIGSTOP)
        resp = requests.get(gw.url + "/protected", headers={"X-Test-Auth": "yes"}, timeout=10)
        assert resp.status_code == 503
        assert resp.json()["code"] == "plugin_unavailable"
        out = gw.output()
        assert "[kong] mp_rpc.lua [t-marker] timeout" in out  # Kong logs the event's failure and goes on ...
        assert "sv-edge guard: no decision mark from sv-jwt" in out  # ... into the guard
    finally:
        if pid is not None:
            os.kill(pid, signal.SIGCONT)
        gw.stop()


def _child_running(ppid: int, needle: str) -> int:
    children = Path(f"/proc/{ppid}/task/{ppid}/children").read_text().split()
    for child in children:
        cmdline = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        if needle in cmdline:
            return int(child)
    raise AssertionError(f"no child process running {needle} under {ppid}: {children}")


def test_bad_lua_refuses_to_start():
    yml = textwrap.dedent(
        """
        _format_version: "3.0"
        plugins:
          - name: post-function
            config:
              access: ["return function() kong.log.err('x') end", "local x = ("]
        """
    )
    gw = EmulatorProcess(yml, [], strict=True)
    try:
        gw.start(wait=False)
        assert gw.wait_exit(20) != 0
        out = gw.output()
        assert (
            "in 'plugins' entity 'post-function' (plugins[0]): field 'config.access[1]': error parsing post-function: "
            "[string \"local x = (\"]:1: unexpected symbol near '<eof>'"
        ) in out, out
    finally:
        gw.stop()
