"""One error format (docs/architecture.md §6) through the real emulator process: kong.conf's error_template_* (the
image paths, relocated by scripts/run_stack.py like `make run`) + the sv-edge Lua plugin (its RFC 9457 formatting),
in front of the sample backend. Every error a client can see is application/problem+json with `code` and
`request_id`; a 2xx is untouched.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from kong_emulator.testing import EmulatorProcess, PluginEntry, free_port, wait_port
from run_stack import IMAGE_ERROR_TEMPLATES, local_overrides

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
SCRIPT = PluginEntry("t-script", HERE / "plugins" / "t_script.py")
PROBLEM = "application/problem+json"
TYPE_BASE = "https://docs.storyverse.example/problems/"
TEMPLATE_KEYS = {
    f"error_template_{fmt}": IMAGE_ERROR_TEMPLATES + "problem.json" for fmt in ("html", "json", "xml", "plain")
}
CONF = {
    **TEMPLATE_KEYS,
    "error_default_type": "application/json",
    "nginx_http_client_max_body_size": "1k",
    "plugins": "bundled,sv-edge,t-script",
    "lua_package_path": f"{REPO / 'kong-plugins'}/?.lua;;",
}


def _steps(*steps) -> str:
    return json.dumps(list(steps))


def kong_yml(backend: str, dead: str) -> str:
    exit_plain = _steps(["kong.response.exit", [403, {"message": "Forbidden by t-script"}]])
    exit_problem = _steps(
        [
            "kong.response.exit",
            [
                429,
                '{"type":"https://docs.storyverse.example/problems/quota-exceeded","title":"Too Many Requests",'
                '"status":429,"detail":"Daily quota reached.","code":"quota_exceeded","request_id":"rid-plugin"}',
                {"Content-Type": PROBLEM},
            ],
        ]
    )
    return f"""
_format_version: "3.0"
upstreams:
  - name: no-targets
services:
  - name: backend
    url: {backend}
    read_timeout: 300
    routes:
      - name: status
        paths: ["/__status"]
        strip_path: false
      - name: echo
        paths: ["/__echo"]
        strip_path: false
      - name: sleep
        paths: ["/__sleep"]
        strip_path: false
      - name: rest
        paths: ["/api"]
        strip_path: false
      - name: exit-plain
        paths: ["/exit-plain"]
        plugins:
          - name: t-script
            config: {{report: false, access: {json.dumps(exit_plain)}}}
      - name: exit-problem
        paths: ["/exit-problem"]
        plugins:
          - name: t-script
            config: {{report: false, access: {json.dumps(exit_problem)}}}
      - name: lua-exit
        paths: ["/lua-exit"]
        plugins:
          - name: pre-function
            config:
              access: ["return kong.response.exit(401, {{ message = 'Unauthorized' }})"]
      - name: boom
        paths: ["/boom"]
        plugins:
          - name: pre-function
            config:
              access: ["local t = nil; return t.boom"]
  - name: dead
    url: {dead}
    routes:
      - name: dead
        paths: ["/dead"]
  - name: unbalanced
    host: no-targets
    routes:
      - name: unbalanced
        paths: ["/unbalanced"]
plugins:
  - name: pre-function
    config:
      access:
        - "kong.ctx.shared.sv_request_id = kong.request.get_header('X-Request-Id')"
  - name: sv-edge
    config: {{}}
"""


@pytest.fixture(scope="module")
def backend():
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "sample_backend", f"stories={port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_port(port, proc=proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture(scope="module")
def gw(backend):
    relocated = local_overrides(TEMPLATE_KEYS, "/tmp", REPO / "kong-plugins" / "plugins",
                                templates_dir=REPO / "kong-plugins" / "error-templates")  # fmt: skip
    env = {k: v for k, v in relocated.items() if k.startswith("KONG_ERROR_TEMPLATE_")}
    assert len(env) == 4
    gw = EmulatorProcess(
        kong_yml(backend, f"http://127.0.0.1:{free_port()}"), [SCRIPT], strict=True, conf_extra=CONF, env=env
    ).start()
    try:
        yield gw
        assert not gw.strict_failures(), gw.strict_failures()
        assert "failed reading the custom" not in gw.output()
    finally:
        gw.stop()


def problem(resp, status: int, code: str, request_id: str | None = None, *, exact_type: bool = True) -> dict:
    assert resp.status_code == status, resp.text
    content_type = resp.headers["Content-Type"]
    assert (content_type if exact_type else content_type.split(";")[0]) == PROBLEM, resp.headers
    body = json.loads(resp.content)
    assert body["status"] == status and body["code"] == code, body
    if exact_type:  # ours; a backend's problem document keeps its own type
        assert body["type"] == TYPE_BASE + code.replace("_", "-")
    assert isinstance(body["title"], str) and body["title"] and isinstance(body["detail"], str) and body["detail"]
    assert body["request_id"] == (request_id or resp.headers["X-Kong-Request-Id"])
    assert int(resp.headers["Content-Length"]) == len(resp.content)
    return body


def get(gw, path: str, **kw):
    return requests.get(gw.url + path, timeout=10, **kw)


def test_no_route_is_a_problem(gw):
    body = problem(get(gw, "/nowhere"), 404, "route_not_found")
    assert body["detail"] == "no Route matched with those values"  # the template's message, kept


@pytest.mark.parametrize(
    "accept",
    [
        None,
        "text/html",
        "application/xml",
        "text/plain",
        "*/*",
        # kong/tools/http.lua:453-488 get_response_type: a browser's Accept is Kong's HTML template; application/grpc
        # first is exit's JSON {"message"} (error_handlers.lua:70-71)
        "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        "application/grpc",
    ],
)
def test_connect_refused_is_a_502_problem_whatever_the_accept(gw, accept):
    resp = get(gw, "/dead", headers={"Accept": accept} if accept else {})
    body = problem(resp, 502, "bad_gateway")
    assert body["detail"] == "An invalid response was received from the upstream server"
    assert "X-Kong-Upstream-Latency" in resp.headers  # still Kong's proxied-error headers


def test_kongs_empty_error_body_is_still_a_502_problem(gw):
    # application/grpc chosen by q is Kong's "" type, whose template is "" (http.lua:383, 394, 531-532): no message
    # reaches sv-edge, which answers its own detail
    body = problem(get(gw, "/dead", headers={"Accept": "text/plain;q=0.5, application/grpc"}), 502, "bad_gateway")
    assert body["detail"] == "The gateway could not complete this request."


def test_upstream_timeout_is_a_504_problem(gw):
    body = problem(get(gw, "/__sleep?ms=2000"), 504, "upstream_timeout")
    assert body["detail"] == "The upstream server is timing out"


def test_no_healthy_target_is_a_503_problem(gw):
    body = problem(get(gw, "/unbalanced"), 503, "upstream_unavailable")
    assert body["detail"] == "failure to get a peer from the ring-balancer"


def test_too_large_body_is_a_413_problem(gw):
    resp = requests.post(gw.url + "/__echo", data=b"x" * 4096, timeout=10)
    body = problem(resp, 413, "payload_too_large")
    assert body["title"] == "Content Too Large" and body["detail"] == "Payload too large"


def test_a_lua_error_is_a_500_problem(gw):
    problem(get(gw, "/boom"), 500, "gateway_error")


def test_a_plugins_plain_exit_becomes_a_problem_and_keeps_its_message(gw):
    body = problem(get(gw, "/exit-plain"), 403, "forbidden")
    assert body["detail"] == "Forbidden by t-script"
    body = problem(get(gw, "/lua-exit"), 401, "unauthorized")
    assert body["detail"] == "Unauthorized"


def test_a_plugins_problem_document_is_left_alone(gw):
    resp = get(gw, "/exit-problem")
    assert resp.status_code == 429 and resp.headers["Content-Type"] == PROBLEM
    assert resp.json()["code"] == "quota_exceeded" and resp.json()["request_id"] == "rid-plugin"


@pytest.mark.parametrize(("status", "code"), [(500, "upstream_error"), (404, "not_found"), (409, "conflict")])
def test_upstream_plain_json_errors_become_problems(gw, status, code):
    resp = get(gw, f"/__status/{status}")
    body = problem(resp, status, code)
    assert "service" not in body  # the backend's own body is not passed on
    assert body["detail"] == f"The upstream service responded with {status}."
    assert "X-Kong-Upstream-Latency" in resp.headers


def test_upstream_problem_without_code_gets_code_and_request_id(gw):
    who = {"X-User-Id": "u-1", "X-User-Role": "parent", "X-Family-Id": "f-1"}  # docs/backend-contract.md
    resp = get(gw, "/api/stories/999", headers=who)
    body = problem(resp, 404, "not_found", exact_type=False)  # the backend's own Content-Type stays
    assert body["service"] == "stories" and body["title"] == "Not Found"  # ... and its own members


def test_request_id_is_sv_request_ids_when_set(gw):
    problem(get(gw, "/__status/502", headers={"X-Request-Id": "rid-123.abc"}), 502, "upstream_error", "rid-123.abc")
    # an id that would need JSON escaping is never echoed: Kong's own id instead
    problem(get(gw, "/__status/500", headers={"X-Request-Id": 'bad"id'}), 500, "upstream_error")


def test_2xx_passes_untouched(gw):
    resp = requests.post(gw.url + "/__echo", json={"hello": "world"}, timeout=10)
    assert resp.status_code == 200
    assert resp.headers["Content-Type"].startswith("application/json")
    assert resp.json()["request"]["body"] == '{"hello": "world"}'
    assert int(resp.headers["Content-Length"]) == len(resp.content)


def test_head_error_has_no_body(gw):
    resp = requests.head(gw.url + "/__status/404", timeout=10)
    assert resp.status_code == 404 and resp.content == b""
