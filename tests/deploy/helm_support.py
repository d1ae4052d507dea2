"""Helpers shared by the deployment tests (a plain module: conftest.py is not importable by name)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "storyverse"
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
RELEASE, NAMESPACE = "storyverse", "storyverse"


class Helm:
    def __init__(self, binary: Path) -> None:
        self.binary = binary

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([str(self.binary), *args], capture_output=True, text=True, timeout=60)
        if check and proc.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
        return proc

    def template(self, *values_args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run("template", RELEASE, str(CHART), "--namespace", NAMESPACE, *values_args, check=check)


def documents(text: str) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def find(docs: list[dict], kind: str, name_suffix: str) -> dict:
    matches = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == f"{RELEASE}-{name_suffix}"]
    assert len(matches) == 1, f"expected one {kind} {RELEASE}-{name_suffix}, got {len(matches)}"
    return matches[0]


def pod_spec(doc: dict) -> dict:
    return doc["spec"]["template"]["spec"] if doc["kind"] in ("Deployment", "Job") else doc["spec"]


def containers(doc: dict) -> dict[str, dict]:
    spec = pod_spec(doc)
    return {c["name"]: c for c in [*spec.get("initContainers", []), *spec["containers"]]}


# The chart's Deployments carry the seed's names (not "<release>-<component>").
DEPLOYMENTS = {
    "gateway": "api-gateway-service",
    "auth": "authentication-service",
    "rate-limiting": "rate-limiting-service",
}


def deployment(docs: list[dict], component: str) -> dict:
    (doc,) = [d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == DEPLOYMENTS[component]]
    return doc
