"""The chart's HPA settings are what the capacity model (bench/capacity.py, docs/capacity.md) derives.

Values are read at test time and found wherever an `autoscaling` block sits under a workload whose key names it
(gateway, auth): the chart may move keys around; the numbers must still hold.
"""

from __future__ import annotations

import sys
from pathlib import Path

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


def test_auth_hpa_holds_the_registration_spike():
    model = capacity.model()
    for hpa in autoscaling("auth"):
        assert hpa["minReplicas"] >= capacity.ZONES
        assert hpa["maxReplicas"] >= model["auth_max"]
        assert hpa["targetCPU"] <= model["target_cpu"]


def test_the_model_is_the_arithmetic_docs_capacity_states():
    model = capacity.model()
    assert model["target_cpu"] == 65  # 100 % / 1.5 growth, rounded down to 5 %
    evening, viral, _ = model["rows"]
    assert evening["gateway pods"] < viral["gateway pods"] == model["gateway_max"]
    text = (REPO / "docs" / "capacity.md").read_text()
    for row in model["rows"]:
        assert f"| {row['scenario']} | {row['gateway req/s']:,.0f} | {row['gateway pods']} |" in text
