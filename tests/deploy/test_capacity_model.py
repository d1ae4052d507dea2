"""The chart's HPA settings are what the capacity model (bench/capacity.py, docs/capacity.md) derives.

Values are read at test time and found wherever an `autoscaling` block sits under a workload whose key names it
(gateway, auth): the chart may move keys around; the numbers must still hold.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from bench import capacity  # noqa: E402


def autoscaling(workload: str) -> list[dict]:
    """Every `autoscaling` block under a values key that names the workload (at any depth)."""
    values = yaml.safe_load((REPO / "helm" / "storyverse" / "values.yaml").read_text())
    found: list[dict] = []

    def walk(node, inside: bool) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                named = inside or workload.lower() in str(key).lower()
                if key == "autoscaling" and named and isinstance(value, dict):
                    found.append(value)
                walk(value, named)

    walk(values, False)
    assert found, f"no autoscaling block for {workload} in values.yaml"
    return found


def test_gateway_hpa_holds_the_seed_peaks_the_model_derives():
    model = capacity.model()
    for hpa in autoscaling("gateway"):
        assert hpa["minReplicas"] >= capacity.ZONES  # one per zone
        assert hpa["maxReplicas"] >= model["gateway_max"], (hpa["maxReplicas"], model["rows"])
        assert hpa["targetCPU"] <= model["target_cpu"]  # a pod at target absorbs the spike within its request
        assert hpa["pluginServerTargetCPU"] <= model["target_cpu"]  # the plugin servers' containers too


def test_auth_hpa_holds_the_registration_spike_at_its_own_target():
    inputs = capacity.measured()
    registration = [s for s in capacity.scenarios() if s.logins_per_s]
    for hpa in autoscaling("auth"):
        assert hpa["minReplicas"] >= capacity.ZONES
        assert hpa["targetCPU"] <= capacity.target_cpu_percent()
        needed = max(capacity.auth_pods(inputs, s, hpa["targetCPU"]) for s in registration)
        assert hpa["maxReplicas"] >= needed, (hpa["maxReplicas"], needed)


def test_the_inputs_are_read_from_the_benchmark_documents(tmp_path, monkeypatch):
    """A re-run bench changes the model: the figures come from the documents' tables, not from constants here."""
    i = capacity.measured()
    assert (i.decide_rate_us, i.decide_story_us) == (
        capacity._number(capacity.cell("benchmarks-quota.md", "decide.lua, rate-only route", "µs inside Redis")),
        capacity._number(capacity.cell("benchmarks-quota.md", "decide.lua, story creation", "µs inside Redis")),
    )
    docs = tmp_path / "docs"
    docs.mkdir()
    for doc in capacity.DOCS.glob("benchmarks-*.md"):
        (docs / doc.name).write_text(doc.read_text())
    auth = (docs / "benchmarks-auth.md").read_text()
    row = next(line for line in auth.splitlines() if line.startswith(f"| {capacity.AUTH_ALGORITHM} |"))
    cells = row.split("|")
    cells[2] = f" {capacity._number(cells[2]) * 2:.0f} "  # twice the /refresh throughput
    (docs / "benchmarks-auth.md").write_text(auth.replace(row, "|".join(cells)))
    monkeypatch.setattr(capacity, "DOCS", docs)
    capacity.table.cache_clear()
    try:
        assert capacity.measured().refresh_ms == pytest.approx(i.refresh_ms / 2)
    finally:
        capacity.table.cache_clear()


def test_the_model_is_the_arithmetic_docs_capacity_states():
    model = capacity.model()
    assert model["target_cpu"] == 65  # 100 % / 1.5 growth, rounded down to 5 %
    evening, viral, _ = model["rows"]
    assert evening["gateway pods"] < viral["gateway pods"] == model["gateway_max"]
    text = capacity.CAPACITY_MD.read_text()
    assert capacity.render_doc(model, text) == text, "docs/capacity.md is stale: python -m bench.capacity --write"


def test_the_refresh_input_is_the_auth_services_default_algorithm():
    from storyverse_auth.config import Config

    assert capacity.AUTH_ALGORITHM == Config.JWT_ALGORITHM
