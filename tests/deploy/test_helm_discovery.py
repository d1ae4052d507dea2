"""The chart and the kong.yml generator agree on service discovery (issue 16) and TLS to the services (issue 18):
kong.yml rendered from the chart's `discovery` values (`sv-gateway-config render --helm-values`) installs, a kong.yml
for another namespace is refused, and Kong's own TLS clients (active https health checks) trust the services' CA
from a Secret."""

from __future__ import annotations

import pytest
import yaml
from helm_support import CHART, CI_VALUES, NAMESPACE, RELEASE, containers, deployment, documents, pod_spec
from storyverse_gateway_config import cli

PRODUCTION = CHART.parents[1] / "gateway-config" / "examples" / "production.yaml"
DEFAULT = next(p for p in CI_VALUES if p.name == "default-values.yaml")


def kong_yml(tmp_path, namespace: str = NAMESPACE) -> str:
    out = tmp_path / f"kong.{namespace}.yml"
    args = ["--settings", str(PRODUCTION), "--helm-values", str(CHART / "values.yaml"), "--helm-values", str(DEFAULT)]
    assert cli.main(["render", *args, "--release", RELEASE, "--namespace", namespace, "-o", str(out)]) == 0
    return str(out)


def test_kong_yml_from_the_charts_discovery_values_installs_with_the_ca_mounted(helm, tmp_path):
    path = kong_yml(tmp_path)
    upstreams = yaml.safe_load(open(path).read())["upstreams"]
    assert {u["targets"][0]["target"] for u in upstreams} >= {f"{RELEASE}-auth.{NAMESPACE}.svc.cluster.local:80"}
    docs = documents(helm.template("-f", str(DEFAULT), "--set-file", f"gateway.declarativeConfig={path}",
                                   "--set", "discovery.upstreamCa.existingSecret=sv-upstream-ca").stdout)  # fmt: skip
    gateway = deployment(docs, "gateway")
    kong = containers(gateway)["api-gateway"]
    env = {e["name"]: e.get("value") for e in kong["env"]}
    assert env["KONG_LUA_SSL_TRUSTED_CERTIFICATE"] == "system,/etc/storyverse/upstream-ca/ca.crt"
    assert {"name": "upstream-ca", "mountPath": "/etc/storyverse/upstream-ca/", "readOnly": True} in kong[
        "volumeMounts"
    ]
    [volume] = [v for v in pod_spec(gateway)["volumes"] if v["name"] == "upstream-ca"]
    assert volume["secret"]["secretName"] == "sv-upstream-ca"


def test_without_the_ca_secret_kong_trusts_the_system_store_only(helm):
    docs = documents(helm.template("-f", str(DEFAULT)).stdout)
    env = {e["name"]: e.get("value") for e in containers(deployment(docs, "gateway"))["api-gateway"]["env"]}
    assert env["KONG_LUA_SSL_TRUSTED_CERTIFICATE"] == "system"


@pytest.mark.parametrize(
    ("namespace", "extra", "message"),
    [
        ("elsewhere", ["--set", "discovery.upstreamCa.existingSecret=ca"], "the discovery values say"),
        (NAMESPACE, [], "set discovery.upstreamCa.existingSecret"),
    ],
)
def test_a_kong_yml_that_disagrees_with_the_values_is_refused(helm, tmp_path, namespace, extra, message):
    path = kong_yml(tmp_path, namespace)
    proc = helm.template("-f", str(DEFAULT), "--set-file", f"gateway.declarativeConfig={path}", *extra, check=False)
    assert proc.returncode != 0 and "VALUES VALIDATION" in proc.stderr and message in proc.stderr, proc.stderr
