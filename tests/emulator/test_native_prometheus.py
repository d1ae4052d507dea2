"""The native ``prometheus`` plugin (Kong 3.9's exporter) and the Status API (`status_listen`): unit tests of the
metric text, then the real emulator process in front of the sample backend, scraped on its Status API."""

from __future__ import annotations

import re
import time

import pytest
import requests
from kong_emulator import KONG_VERSION
from kong_emulator.native import native_infos
from kong_emulator.native.prometheus import (
    KONG_LATENCY_BUCKETS,
    UPSTREAM_LATENCY_BUCKETS,
    Exporter,
    bucket_format,
)
from kong_emulator.testing import EmulatorProcess, free_port, wait_port
from sample_backend.testing import running

ALL_ON = {"status_code_metrics": True, "latency_metrics": True, "bandwidth_metrics": True, "per_consumer": True}


def _message(route="a", status=200, source_kong=False, proxy=12, consumer=None):
    msg = {
        "service": {"name": "echo", "host": "backend"},
        "route": {"name": route, "id": "r-" + route},
        "request": {"size": 10},
        "response": {"status": status, "size": 100},
        "latencies": {"kong": 3, "proxy": proxy, "request": 15},
        "workspace_name": "default",
    }
    if consumer:
        msg["consumer"] = {"username": consumer}
    return msg


def test_info_is_kongs_priority_phase_and_defaults():
    info = native_infos()["prometheus"]
    assert info.priority == 13 and info.phases == ("log",)
    fields = [next(iter(f)) for f in info.config_fields]
    assert fields == [
        "per_consumer", "status_code_metrics", "ai_metrics", "latency_metrics", "bandwidth_metrics",
        "upstream_health_metrics",
    ]  # fmt: skip
    assert all(next(iter(f.values()))["default"] is False for f in info.config_fields)


def test_bucket_padding_is_nginx_lua_prometheus():
    assert bucket_format(KONG_LATENCY_BUCKETS) == "%06.1f"
    assert bucket_format(UPSTREAM_LATENCY_BUCKETS) == "%07.1f"
    assert bucket_format([0.00005, 10, 1000]) == "%010.5f"


def test_log_records_kongs_metric_names_labels_and_buckets():
    exp = Exporter()
    for _ in range(3):
        exp.log(_message(), ALL_ON, "service")
    exp.log(_message(route="b", status=500), ALL_ON, "service")
    exp.log(_message(route="b", status=401, proxy=-1, consumer="alice"), ALL_ON, "exit")
    exp.log({**_message(), "service": None}, ALL_ON, "service")  # no service: nothing recorded
    text = exp.metric_data(node_id="n1", stats={"total_requests": 6}, memory={})
    lines = text.splitlines()
    assert (
        'kong_http_requests_total{service="echo",route="a",code="200",source="service",workspace="default",'
        'consumer=""} 3'
    ) in lines
    assert (
        'kong_http_requests_total{service="echo",route="b",code="401",source="kong",workspace="default",'
        'consumer="alice"} 1'
    ) in lines
    assert 'kong_kong_latency_ms_bucket{service="echo",route="a",workspace="default",le="1"} 0' not in lines
    assert 'kong_kong_latency_ms_bucket{service="echo",route="a",workspace="default",le="5"} 3' in lines
    assert 'kong_kong_latency_ms_bucket{service="echo",route="a",workspace="default",le="+Inf"} 3' in lines
    assert 'kong_kong_latency_ms_count{service="echo",route="a",workspace="default"} 3' in lines
    assert 'kong_kong_latency_ms_sum{service="echo",route="a",workspace="default"} 9' in lines
    assert 'kong_upstream_latency_ms_bucket{service="echo",route="a",workspace="default",le="25"} 3' in lines
    assert 'kong_upstream_latency_ms_count{service="echo",route="b",workspace="default"} 1' in lines  # not the exit
    assert 'kong_request_latency_ms_bucket{service="echo",route="b",workspace="default",le="60000"} 2' in lines
    bandwidth = 'kong_bandwidth_bytes{service="echo",route="a",direction="%s",workspace="default",consumer=""} %d'
    assert bandwidth % ("egress", 300) in lines and bandwidth % ("ingress", 30) in lines
    assert "# TYPE kong_http_requests_total counter" in lines
    assert "# TYPE kong_kong_latency_ms histogram" in lines
    assert "# HELP kong_datastore_reachable Datastore reachable from Kong, 0 is unreachable" in lines
    assert "kong_datastore_reachable 1" in lines
    assert 'kong_nginx_requests_total{node_id="n1",subsystem="http"} 6' in lines
    assert 'kong_nginx_connections_total{node_id="n1",subsystem="http",state="total"} 6' in lines
    assert f'kong_node_info{{node_id="n1",version="{KONG_VERSION}"}} 1' in lines
    assert "kong_nginx_metric_errors_total 0" in lines
    # buckets in increasing order, +Inf last, then _count and _sum (the sorted padded keys)
    a_buckets = [ln for ln in lines if ln.startswith('kong_kong_latency_ms_bucket{service="echo",route="a"')]
    les = [re.search(r'le="([^"]+)"', ln).group(1) for ln in a_buckets]
    assert les == [*(str(b) for b in KONG_LATENCY_BUCKETS if b >= 5), "+Inf"]


def test_flags_off_record_nothing():
    exp = Exporter()
    exp.log(_message(), {}, "service")
    text = exp.metric_data(node_id="n1", stats={}, memory={})
    assert "kong_http_requests_total{" not in text and "kong_bandwidth_bytes{" not in text
    assert "kong_kong_latency_ms_count" not in text


# ---- through the emulator --------------------------------------------------------------------------------------


def kong_yml(backend: str) -> str:
    return f"""
_format_version: "3.0"
services:
  - name: echo
    url: {backend}/__echo
    routes:
      - name: universes
        paths: ["/universes"]
  - name: statuses
    url: {backend}/__status
    routes:
      - name: status
        paths: ["/status-of"]
      - name: denied
        paths: ["/denied"]
        plugins:
          - name: pre-function
            config:
              access: ["return kong.response.exit(401, {{message = 'no'}})"]
plugins:
  - name: prometheus
    config:
      status_code_metrics: true
      latency_metrics: true
      bandwidth_metrics: true
      per_consumer: true
"""


@pytest.fixture(scope="module")
def backend():
    with running("echo") as urls:
        yield urls["echo"]


@pytest.fixture(scope="module")
def gw(backend):
    status_port = free_port()
    gw = EmulatorProcess(kong_yml(backend), strict=True, conf_extra={"status_listen": f"127.0.0.1:{status_port}"})
    gw.start()
    gw.status_url = f"http://127.0.0.1:{status_port}"
    try:
        wait_port(status_port, proc=gw.proc)
        yield gw
        assert not gw.strict_failures(), gw.strict_failures()
    finally:
        gw.stop()


def _scrape(gw, want: str, seconds: float = 5.0) -> str:
    deadline = time.monotonic() + seconds
    while True:
        text = requests.get(gw.status_url + "/metrics", timeout=5).text
        if want in text or time.monotonic() > deadline:
            return text
        time.sleep(0.05)


def test_requests_across_two_routes_with_errors_are_counted(gw):
    for _ in range(3):
        assert requests.get(gw.url + "/universes", timeout=5).status_code == 200
    assert requests.get(gw.url + "/status-of/404", timeout=5).status_code == 404
    for _ in range(2):
        assert requests.get(gw.url + "/status-of/503", timeout=5).status_code == 503
    assert requests.get(gw.url + "/denied", timeout=5).status_code == 401
    assert requests.get(gw.url + "/no-such-route", timeout=5).status_code == 404  # no service: not recorded
    labels = 'workspace="default",consumer=""'
    want = f'kong_http_requests_total{{service="statuses",route="denied",code="401",source="kong",{labels}}} 1'
    text = _scrape(gw, want)
    lines = text.splitlines()
    count = 'kong_http_requests_total{service="%s",route="%s",code="%d",source="service",' + labels + "} %d"
    assert count % ("echo", "universes", 200, 3) in lines
    assert count % ("statuses", "status", 404, 1) in lines
    assert count % ("statuses", "status", 503, 2) in lines
    assert want in lines
    assert not any('code="404",source="kong"' in ln for ln in lines)  # the route-less 404
    assert 'kong_request_latency_ms_count{service="echo",route="universes",workspace="default"} 3' in lines
    assert 'kong_upstream_latency_ms_count{service="statuses",route="status",workspace="default"} 3' in lines
    assert not any(ln.startswith('kong_upstream_latency_ms_count{service="statuses",route="denied"') for ln in lines)
    assert any(
        ln.startswith('kong_kong_latency_ms_bucket{service="echo",route="universes",workspace="default",le="+Inf"} 3')
        for ln in lines
    )
    egress_key = 'kong_bandwidth_bytes{service="echo",route="universes",direction="egress"'
    egress = [ln for ln in lines if ln.startswith(egress_key)]
    assert egress and float(egress[0].rsplit(" ", 1)[1]) > 0
    assert "kong_datastore_reachable 1" in lines
    assert any(ln.startswith("kong_nginx_connections_total{") and 'state="accepted"' in ln for ln in lines)
    assert any(ln.startswith("kong_node_info{") for ln in lines)
    resp = requests.get(gw.status_url + "/metrics", timeout=5)
    assert resp.headers["Content-Type"] == "text/plain; charset=UTF-8"


def test_status_api_status_ready_and_404(gw):
    requests.get(gw.url + "/universes", timeout=5)
    body = requests.get(gw.status_url + "/status", timeout=5).json()
    assert body["database"] == {"reachable": True}
    assert body["server"]["total_requests"] >= 1 and body["server"]["connections_accepted"] >= 1
    assert body["memory"]["lua_shared_dicts"]["kong_db_cache"]["capacity"] == "128.00 MiB"
    assert len(body["configuration_hash"]) == 32
    raw = requests.get(gw.status_url + "/status?unit=b", timeout=5).json()
    assert raw["memory"]["lua_shared_dicts"]["kong"]["capacity"] == 5 * 1024 * 1024
    bad = requests.get(gw.status_url + "/status?unit=x", timeout=5)
    assert bad.status_code == 400 and "invalid unit 'x'" in bad.json()["message"]
    ready = requests.get(gw.status_url + "/status/ready", timeout=5)
    assert ready.status_code == 200 and ready.json() == {"message": "ready"}
    missing = requests.get(gw.status_url + "/nope", timeout=5)
    assert missing.status_code == 404 and missing.json() == {"message": "Not found"}
    # the proxy does not serve the Status API
    assert requests.get(gw.url + "/metrics", timeout=5).status_code == 404
