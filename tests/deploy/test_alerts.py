"""Alerts and dashboards: the rule file passes `promtool check rules` and its unit tests (`promtool test rules`), the
chart ships exactly that file as a PrometheusRule, the dashboards are generated and provisioned for Grafana's sidecar,
and every metric an alert or a panel queries is one our exporters really serve."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
import yaml
from helm_support import CHART, REPO, documents, find
from prometheus_client.parser import text_string_to_metric_families

ALERTS = CHART / "files" / "alerts"
RULES, RULE_TESTS = ALERTS / "storyverse.rules.yaml", ALERTS / "storyverse.rules.test.yaml"
DASHBOARDS = CHART / "files" / "dashboards"
METRIC = re.compile(r"([a-zA-Z_:][\w:]*)\s*[{\[]")
# The list: error rate, p99 latency, plugin-server unavailable / guard 503s, Redis breaker open, quota
# fail-open, failed-login surge, abuse detections.
EXPECTED_ALERTS = {
    "StoryVerseGatewayErrorRate",
    "StoryVerseGatewayLatencyP99",
    "StoryVerseGatewayOwnLatencyP99",
    "StoryVersePluginServerUnavailable",
    "StoryVerseRateLimitingMetricsDown",
    "StoryVerseRedisUnavailable",
    "StoryVerseRedisBreakerOpen",
    "StoryVerseQuotaFailOpen",
    "StoryVerseFailedLoginSurge",
    "StoryVerseAbuseDetections",
}


@pytest.fixture(scope="session")
def promtool() -> str:
    """promtool from PATH or Debian's prometheus package (scripts/ensure-promtool.sh; never skipped)."""
    proc = subprocess.run(
        ["bash", str(REPO / "scripts" / "ensure-promtool.sh")], capture_output=True, text=True, check=True, timeout=300
    )
    return proc.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def monitoring(renders) -> list[dict]:
    return documents(renders["external-redis-values"])


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=120, cwd=ALERTS)


def test_promtool_check_rules(promtool):
    proc = _run(promtool, "check", "rules", str(RULES))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(EXPECTED_ALERTS)} rules found" in proc.stdout


def test_promtool_unit_tests_of_every_alert(promtool):
    proc = _run(promtool, "test", "rules", str(RULE_TESTS))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    tested = {
        t["alertname"] for case in yaml.safe_load(RULE_TESTS.read_text())["tests"] for t in case["alert_rule_test"]
    }
    assert tested == EXPECTED_ALERTS  # each alert has at least one firing (or quiet) case


def test_promtool_rejects_a_broken_rule(promtool, tmp_path):
    broken = tmp_path / "broken.rules.yaml"
    broken.write_text(
        RULES.read_text().replace("sum by (namespace) (rate(sv_quota_redis", "sum by (namespace (rate(sv_quota_redis")
    )
    assert _run(promtool, "check", "rules", str(broken)).returncode != 0


def test_the_chart_ships_the_checked_rules_as_a_prometheusrule(monitoring, promtool, tmp_path):
    rule = find(monitoring, "PrometheusRule", "alerts")
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert rule["spec"]["groups"] == yaml.safe_load(RULES.read_text())["groups"]
    rendered = tmp_path / "rendered.rules.yaml"
    rendered.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    assert _run(promtool, "check", "rules", str(rendered)).returncode == 0
    assert {r["alert"] for g in rule["spec"]["groups"] for r in g["rules"]} == EXPECTED_ALERTS


def test_alerts_and_dashboards_are_off_unless_asked(renders):
    kinds = {(d["kind"], d["metadata"]["name"]) for d in documents(renders["default-values"])}
    assert not any(kind == "PrometheusRule" or name.endswith("-dashboard") for kind, name in kinds)


def test_dashboards_are_generated_from_their_declaration():
    proc = subprocess.run(
        [sys.executable, str(REPO / "helm" / "tools" / "gen_dashboards.py"), "--check"], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr


def test_dashboards_are_provisioned_for_the_grafana_sidecar(monitoring):
    maps = {
        d["metadata"]["name"]: d
        for d in monitoring
        if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-dashboard")
    }
    assert set(maps) == {f"storyverse-{s}-dashboard" for s in ("gateway", "auth", "rate-limiting")}
    for cm in maps.values():
        assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
        [(key, text)] = cm["data"].items()
        assert json.loads(text) == json.loads((DASHBOARDS / key).read_text())


# The seed's monitoring table: each service's key metrics, as the metric families a panel must query.
SEED_TABLE = {
    "storyverse-gateway": {"kong_http_requests_total", "kong_request_latency_ms_bucket"},
    "storyverse-auth": {"sv_auth_logins_total", "sv_auth_tokens_issued_total", "sv_auth_failed_attempts_total"},
    "storyverse-rate-limiting": {
        "sv_quota_throttled_total",
        "sv_quota_utilisation_ratio_bucket",
        "sv_quota_abuse_blocks_total",
    },
}


def _dashboard_metrics(uid: str) -> set[str]:
    board = json.loads((DASHBOARDS / f"{uid}.json").read_text())
    return {m for p in board["panels"] for t in p["targets"] for m in METRIC.findall(t["expr"])}


@pytest.mark.parametrize("uid", sorted(SEED_TABLE))
def test_each_dashboard_covers_its_row_of_the_seed_table(uid):
    assert SEED_TABLE[uid] <= _dashboard_metrics(uid)


def _served_metrics() -> set[str]:
    """Every sample name our exporters serve: Kong's prometheus plugin (the emulator's port of exporter.lua), the
    rate-limiting plugin server and the auth service, plus Prometheus' own `up`."""
    from kong_emulator.native.prometheus import PREFIX, Exporter
    from storyverse_auth.metrics import Metrics as AuthMetrics
    from storyverse_plugins.quota.metrics import _LABELS, Metrics

    names = {"up"}
    auth = AuthMetrics(None)
    for counter in auth.counters.values():
        counter.labels(*["x"] * len(counter._labelnames)).inc() if counter._labelnames else counter.inc()
    auth.requests.labels("/x", "GET", "200").inc()
    auth.latency.labels("/x", "GET").observe(0.1)
    names |= {s.name for family in text_string_to_metric_families(auth.render().decode()) for s in family.samples}
    for metric in Exporter().reg.metrics.values():
        base = PREFIX + metric.name
        names |= {base + s for s in ("_bucket", "_sum", "_count")} if metric.typ == "histogram" else {base}
    quota = Metrics()
    for name, labels in _LABELS.items():
        quota.inc(name, *["x"] * len(labels))
    quota.observe_quota("q", 0.9)
    names |= {line.split("{")[0].split(" ")[0] for line in quota.render().splitlines() if not line.startswith("#")}
    return names


def test_every_queried_metric_is_served():
    served = _served_metrics()
    rules = yaml.safe_load(RULES.read_text())["groups"]
    queried = {m for g in rules for r in g["rules"] for m in METRIC.findall(r["expr"])}
    queried |= {m for uid in SEED_TABLE for m in _dashboard_metrics(uid)}
    assert queried - served == set()
