"""Generate the Grafana dashboards (helm/storyverse/files/dashboards/*.json) for the seed's monitoring table.

    python helm/tools/gen_dashboards.py            # write the JSON files
    python helm/tools/gen_dashboards.py --check    # exit 1 if a file is stale

One dashboard per service of the seed's table (API Gateway: request rate, latency, error rate, endpoint popularity;
Authentication: login rate, token issuance rate, failed attempts; Rate Limiting: throttled requests, quota
utilisation, abuse detections). Panels are declared as data below; the chart ships the files in ConfigMaps that the
Grafana sidecar loads (label grafana_dashboard: "1"). tests/deploy/test_dashboards.py checks that every metric a
panel queries is one an exporter really serves.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "storyverse" / "files" / "dashboards"
NS = 'namespace="$namespace"'

# (title, unit, [(expr, legend)]) per panel; a panel is a time series unless its title says "top".
DASHBOARDS: dict[str, tuple[str, list[tuple[str, str, list[tuple[str, str]]]]]] = {
    "storyverse-gateway": (
        "StoryVerse / API Gateway",
        [
            ("Request rate by service", "reqps", [(f"sum by (service) (rate(kong_http_requests_total{{{NS}}}[5m]))", "{{service}}")]),
            ("Latency (gateway + upstream)", "ms", [
                (f"histogram_quantile({q}, sum by (le) (rate(kong_request_latency_ms_bucket{{{NS}}}[5m])))", f"p{int(q * 100)}")
                for q in (0.5, 0.95, 0.99)
            ]),
            ("Latency inside Kong (plugins included), p99", "ms", [
                (f"histogram_quantile(0.99, sum by (le) (rate(kong_kong_latency_ms_bucket{{{NS}}}[5m])))", "kong p99"),
                (f"histogram_quantile(0.99, sum by (le) (rate(kong_upstream_latency_ms_bucket{{{NS}}}[5m])))", "upstream p99"),
            ]),
            ("Error rate", "percentunit", [
                (f'sum(rate(kong_http_requests_total{{{NS},code=~"5.."}}[5m])) / sum(rate(kong_http_requests_total{{{NS}}}[5m]))', "5xx"),
                (f'sum(rate(kong_http_requests_total{{{NS},code=~"4.."}}[5m])) / sum(rate(kong_http_requests_total{{{NS}}}[5m]))', "4xx"),
            ]),
            ("Gateway's own 503s (fail-closed guard, auth or limits unavailable)", "reqps", [
                (f'sum(rate(kong_http_requests_total{{{NS},code="503",source="kong"}}[5m]))', "503 from Kong"),
            ]),
            ("Endpoint popularity (top 10 routes)", "reqps", [
                (f"topk(10, sum by (route) (rate(kong_http_requests_total{{{NS}}}[15m])))", "{{route}}"),
            ]),
        ],
    ),
    "storyverse-auth": (
        "StoryVerse / Authentication",
        [
            ("Login rate by outcome", "reqps", [(f"sum by (outcome) (rate(sv_auth_logins_total{{{NS}}}[5m]))", "{{outcome}}")]),
            ("Token issuance rate by kind", "reqps", [
                (f"sum by (kind) (rate(sv_auth_tokens_issued_total{{{NS}}}[5m]))", "{{kind}}"),
            ]),
            ("Failed attempts by reason", "reqps", [
                (f"sum by (reason) (rate(sv_auth_failed_attempts_total{{{NS}}}[5m]))", "{{reason}}"),
            ]),
            ("Request rate by endpoint", "reqps", [
                (f"sum by (endpoint) (rate(sv_auth_requests_total{{{NS}}}[5m]))", "{{endpoint}}"),
            ]),
            ("Latency p99 by endpoint", "s", [
                (
                    f"histogram_quantile(0.99, sum by (endpoint, le) (rate(sv_auth_request_duration_seconds_bucket{{{NS}}}[5m])))",
                    "{{endpoint}}",
                ),
            ]),
            ("Error rate (5xx)", "percentunit", [
                (f'sum(rate(sv_auth_requests_total{{{NS},status=~"5.."}}[5m])) / sum(rate(sv_auth_requests_total{{{NS}}}[5m]))', "5xx"),
            ]),
            ("Refresh-token reuse (sessions revoked)", "short", [
                (f"sum(increase(sv_auth_refresh_reuse_total{{{NS}}}[1h]))", "reuse / h"),
            ]),
            ("Password resets", "short", [
                (f"sum by (stage) (increase(sv_auth_password_resets_total{{{NS}}}[1h]))", "{{stage}} / h"),
            ]),
        ],
    ),
    "storyverse-rate-limiting": (
        "StoryVerse / Rate Limiting",
        [
            ("Throttled requests (429) by policy", "reqps", [
                (f"sum by (policy) (rate(sv_quota_throttled_total{{{NS}}}[5m]))", "{{policy}}"),
            ]),
            ("Quota utilisation: share of checks above 80% / at 100% of the quota, mean fill", "percentunit", [
                (
                    f'1 - sum by (quota) (rate(sv_quota_utilisation_ratio_bucket{{{NS},le="0.8"}}[15m]))'
                    f' / sum by (quota) (rate(sv_quota_utilisation_ratio_count{{{NS}}}[15m]))',
                    "{{quota}} > 80%",
                ),
                (
                    f'1 - sum by (quota) (rate(sv_quota_utilisation_ratio_bucket{{{NS},le="1.0"}}[15m]))'
                    f' / sum by (quota) (rate(sv_quota_utilisation_ratio_count{{{NS}}}[15m]))',
                    "{{quota}} over",
                ),
                (
                    f"sum by (quota) (rate(sv_quota_utilisation_ratio_sum{{{NS}}}[15m]))"
                    f" / sum by (quota) (rate(sv_quota_utilisation_ratio_count{{{NS}}}[15m]))",
                    "{{quota}} mean fill",
                ),
            ]),
            ("Abuse detections", "short", [
                (f"sum by (subject, reason) (increase(sv_quota_abuse_blocks_total{{{NS}}}[10m]))", "blocks {{subject}} {{reason}}"),
                (f"sum by (status) (increase(sv_quota_abuse_strikes_total{{{NS}}}[10m]))", "strikes {{status}}"),
            ]),
            ("Shadow-mode rejects (limits under evaluation)", "reqps", [
                (f"sum by (policy) (rate(sv_quota_shadow_rejects_total{{{NS}}}[5m]))", "{{policy}}"),
            ]),
            ("Redis errors and fail-open", "reqps", [
                (f"sum by (op) (rate(sv_quota_redis_errors_total{{{NS}}}[5m]))", "redis errors {{op}}"),
                (f"sum by (op) (rate(sv_quota_fail_open_total{{{NS}}}[5m]))", "fail open {{op}}"),
                (f"max by (pod) (sv_quota_redis_breaker_open{{{NS}}})", "breaker open {{pod}}"),
            ]),
        ],
    ),
}  # fmt: skip

VARIABLE_METRIC = {
    "storyverse-gateway": "kong_http_requests_total",
    "storyverse-auth": "sv_auth_logins_total",
    "storyverse-rate-limiting": "sv_quota_throttled_total",
}


def panel(index: int, title: str, unit: str, targets: list[tuple[str, str]]) -> dict:
    return {
        "id": index + 1,
        "type": "timeseries",
        "title": title,
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "gridPos": {"h": 8, "w": 12, "x": 12 * (index % 2), "y": 8 * (index // 2)},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}, "tooltip": {"mode": "multi"}},
        "targets": [
            {"refId": chr(ord("A") + i), "expr": expr, "legendFormat": legend}
            for i, (expr, legend) in enumerate(targets)
        ],
    }


def dashboard(uid: str) -> dict:
    title, panels = DASHBOARDS[uid]
    return {
        "uid": uid,
        "title": title,
        "tags": ["storyverse"],
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {
            "list": [
                {"name": "datasource", "type": "datasource", "query": "prometheus", "label": "Data source"},
                {
                    "name": "namespace",
                    "type": "query",
                    "label": "Namespace",
                    "datasource": {"type": "prometheus", "uid": "${datasource}"},
                    "query": f"label_values({VARIABLE_METRIC[uid]}, namespace)",
                    "refresh": 2,
                },
            ]
        },
        "panels": [panel(i, *p) for i, p in enumerate(panels)],
    }


def rendered() -> dict[Path, str]:
    return {OUT / f"{uid}.json": json.dumps(dashboard(uid), indent=2) + "\n" for uid in DASHBOARDS}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if a file differs from what would be written")
    args = parser.parse_args()
    stale = [path for path, text in rendered().items() if not path.exists() or path.read_text() != text]
    if args.check:
        for path in stale:
            print(f"{path} is stale; run python helm/tools/gen_dashboards.py", file=sys.stderr)
        return 1 if stale else 0
    OUT.mkdir(parents=True, exist_ok=True)
    for path, text in rendered().items():
        path.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
