"""The chart renders, lints and validates against Kubernetes' own schemas; golden snapshots; bad values fail loudly.

Regenerate the snapshots after an intended change: SV_UPDATE_GOLDEN=1 pytest tests/deploy
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
from helm_support import CHART, CI_VALUES, REPO, documents

GOLDEN = Path(__file__).parent / "golden"
BAD = REPO / "tests" / "fixtures" / "helm-bad"
# The chart's floor (Chart.yaml kubeVersion) and the newest schemas kubernetes-validate ships.
K8S_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())
# CRDs kubernetes-validate has no schema for: checked against the fields this chart relies on instead.
CRD_SCHEMAS = {
    ("cert-manager.io/v1", "Certificate"): {
        "type": "object",
        "required": ["spec"],
        "properties": {
            "spec": {
                "type": "object",
                "required": ["secretName", "issuerRef", "dnsNames"],
                "additionalProperties": False,
                "properties": {
                    "secretName": {"type": "string", "minLength": 1},
                    "issuerRef": {
                        "type": "object",
                        "required": ["name", "kind"],
                        "properties": {"kind": {"enum": ["Issuer", "ClusterIssuer"]}},
                    },
                    "dnsNames": {"type": "array", "minItems": 1, "items": {"type": "string"}},
                    "privateKey": {"type": "object"},
                },
            }
        },
    },
    ("monitoring.coreos.com/v1", "PrometheusRule"): {
        "type": "object",
        "required": ["spec"],
        "properties": {
            "spec": {
                "type": "object",
                "required": ["groups"],
                "additionalProperties": False,
                "properties": {
                    "groups": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "object",
                            "required": ["name", "rules"],
                            "additionalProperties": False,
                            "properties": {
                                "name": {"type": "string"},
                                "rules": {
                                    "type": "array",
                                    "items": {
                                        "type": "object",
                                        "required": ["alert", "expr"],
                                        "additionalProperties": False,
                                        "properties": {
                                            "alert": {"type": "string"},
                                            "expr": {"type": "string"},
                                            "for": {"type": "string"},
                                            "labels": {"type": "object"},
                                            "annotations": {"type": "object"},
                                        },
                                    },
                                },
                            },
                        },
                    }
                },
            }
        },
    },
    ("monitoring.coreos.com/v1", "ServiceMonitor"): {
        "type": "object",
        "required": ["spec"],
        "properties": {
            "spec": {
                "type": "object",
                "required": ["selector", "endpoints"],
                "additionalProperties": False,
                "properties": {
                    "selector": {"type": "object", "required": ["matchLabels"]},
                    "endpoints": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "object",
                            "required": ["port", "path"],
                            "additionalProperties": False,
                            "properties": {
                                "port": {"type": "string"},
                                "path": {"type": "string"},
                                "interval": {"type": "string"},
                                "scheme": {"enum": ["http", "https"]},
                                "tlsConfig": {
                                    "type": "object",
                                    "additionalProperties": False,
                                    "properties": {
                                        "serverName": {"type": "string"},
                                        "ca": {
                                            "type": "object",
                                            "properties": {
                                                "secret": {
                                                    "type": "object",
                                                    "required": ["name", "key"],
                                                    "properties": {
                                                        "name": {"type": "string"},
                                                        "key": {"type": "string"},
                                                    },
                                                }
                                            },
                                        },
                                    },
                                },
                            },
                        },
                    },
                },
            }
        },
    },
}


def _ids(paths):
    return [p.stem for p in paths]


def test_values_schema_is_generated_from_param_docs():
    proc = subprocess.run(
        [sys.executable, str(REPO / "helm" / "tools" / "gen_schema.py"), "--check"], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("values", CI_VALUES, ids=_ids(CI_VALUES))
def test_helm_lint_strict(helm, values):
    proc = helm.run("lint", "--strict", str(CHART), "-f", str(values), check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "[WARNING]" not in proc.stdout


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("values", CI_VALUES, ids=_ids(CI_VALUES))
def test_every_object_validates_strictly(renders, values, version):
    checked = 0
    for doc in documents(renders[values.stem]):
        crd = CRD_SCHEMAS.get((doc["apiVersion"], doc["kind"]))
        if crd:
            jsonschema.validate(doc, crd)
        else:  # unknown kinds raise SchemaNotFoundError: a warning in the CLI, a failure here
            kubernetes_validate.validate(doc, version, strict=True)
        checked += 1
    assert checked >= 15


@pytest.mark.parametrize("values", CI_VALUES, ids=_ids(CI_VALUES))
def test_render_matches_golden_snapshot(renders, values):
    golden = GOLDEN / f"{values.stem.removesuffix('-values')}.yaml"
    if os.environ.get("SV_UPDATE_GOLDEN") == "1":
        golden.write_text(renders[values.stem])
    assert golden.exists(), f"missing {golden}; run with SV_UPDATE_GOLDEN=1"
    assert renders[values.stem] == golden.read_text(), f"{golden.name} differs; SV_UPDATE_GOLDEN=1 if intended"


BAD_FILES = sorted(BAD.glob("*.yaml"))


@pytest.mark.parametrize("bad", BAD_FILES, ids=_ids(BAD_FILES))
def test_bad_values_fail_with_their_message(helm, bad):
    expect = bad.read_text().splitlines()[0].removeprefix("# expect: ")
    proc = helm.template("-f", str(CHART / "ci" / "default-values.yaml"), "-f", str(bad), check=False)
    assert proc.returncode != 0, f"{bad.name} rendered without error"
    assert expect in proc.stderr, proc.stderr


def test_repository_kong_yml_lands_in_the_configmap(helm):
    kong_yml = REPO / "kong.yml"
    out = helm.template(
        "-f", str(CHART / "ci" / "default-values.yaml"), "--set-file", f"gateway.declarativeConfig={kong_yml}"
    ).stdout
    (cm,) = [d for d in documents(out) if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-config")]
    assert cm["data"]["kong.yml"].strip() == kong_yml.read_text().strip()
