"""The chart and the kong.yml generator agree on service discovery (issue 16) and TLS to the services (issue 18):
kong.yml rendered from the chart's `discovery` values (`sv-gateway-config render --helm-values`) installs, a kong.yml
for another namespace is refused, and Kong's own TLS clients (active https health checks) trust the services' CA
from the one CA Secret the chart names (internalTls.caSecretName), the same file nginx verifies proxied requests
against."""

from __future__ import annotations

import pytest
import yaml
from helm_support import CHART, CI_VALUES, NAMESPACE, RELEASE, containers, deployment, documents, find, pod_spec
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
    assert {u["targets"][0]["target"] for u in upstreams} >= {f"{RELEASE}-auth.{NAMESPACE}.svc.cluster.local:443"}
    docs = documents(helm.template("-f", str(DEFAULT), "--set-file", f"gateway.declarativeConfig={path}",
                                   "--set", "internalTls.caSecretName=sv-internal-ca").stdout)  # fmt: skip
    gateway = deployment(docs, "gateway")
    kong = containers(gateway)["api-gateway"]
    env = {e["name"]: e.get("value") for e in kong["env"]}
    # One CA for both of Kong's TLS clients: Lua sockets (health checks) and nginx's proxy_ssl (proxied requests).
    assert env["KONG_LUA_SSL_TRUSTED_CERTIFICATE"] == "system,/etc/storyverse/internal-ca/ca.crt"
    assert env["KONG_NGINX_PROXY_PROXY_SSL_TRUSTED_CERTIFICATE"] == "/etc/storyverse/internal-ca/ca.crt"
    assert {"name": "internal-ca", "mountPath": "/etc/storyverse/internal-ca/", "readOnly": True} in kong[
        "volumeMounts"
    ]
    volumes = [v for v in pod_spec(gateway)["volumes"] if "secret" in v]
    [volume] = [v for v in volumes if v["name"] == "internal-ca"]
    assert volume["secret"]["secretName"] == "sv-internal-ca"
    assert not [v for v in volumes if v["name"] == "upstream-ca"]  # no second CA value or mount


def test_without_internal_tls_kong_trusts_the_system_store_only(helm):
    docs = documents(helm.template("-f", str(DEFAULT), "--set", "internalTls.enabled=false").stdout)
    env = {e["name"]: e.get("value") for e in containers(deployment(docs, "gateway"))["api-gateway"]["env"]}
    assert env["KONG_LUA_SSL_TRUSTED_CERTIFICATE"] == "system"
    assert "KONG_NGINX_PROXY_PROXY_SSL_TRUSTED_CERTIFICATE" not in env


def test_the_second_ca_value_is_gone(helm):
    proc = helm.template("-f", str(DEFAULT), "--set", "discovery.upstreamCa.existingSecret=ca", check=False)
    assert proc.returncode != 0 and "upstreamCa" in proc.stderr, proc.stderr


# Our own services: discovery backend -> the component whose Service the target names.
OWN_SERVICES = {"auth": "auth", "rate-limiting": "rate-limiting"}


def test_each_discovery_target_is_the_tls_port_of_our_services(helm, tmp_path):
    """kong.yml rendered from the chart's discovery values targets, for the auth and rate limiting services, exactly the
    port their Service serves TLS on (a target on another port is a connection refused on every request)."""
    path = kong_yml(tmp_path)
    kong = yaml.safe_load(open(path).read())
    targets = {u["name"].removesuffix(".upstream"): u["targets"][0]["target"] for u in kong["upstreams"]}
    docs = documents(helm.template("-f", str(DEFAULT), "--set-file", f"gateway.declarativeConfig={path}").stdout)
    for backend, component in OWN_SERVICES.items():
        service = find(docs, "Service", component)
        [port] = service["spec"]["ports"]
        host = f"{service['metadata']['name']}.{NAMESPACE}.svc.cluster.local"
        assert targets[backend] == f"{host}:{port['port']}", (backend, targets[backend], port)
        urls = [s["url"] for s in kong["services"] if s["url"].split("/")[2].startswith(f"{backend}.upstream")]
        assert urls and all(u.startswith("https://") for u in urls), (backend, urls)
    # The chart's defaults for the other backends are TLS ports too (scheme https by default).
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert {b["port"] for b in values["discovery"]["backends"].values()} == {443}


@pytest.mark.parametrize(
    ("namespace", "extra", "message"),
    [
        ("elsewhere", [], "the discovery values say"),
        (NAMESPACE, ["--set", "internalTls.enabled=false"], "enable internalTls (internalTls.caSecretName)"),
    ],
)
def test_a_kong_yml_that_disagrees_with_the_values_is_refused(helm, tmp_path, namespace, extra, message):
    path = kong_yml(tmp_path, namespace)
    proc = helm.template("-f", str(DEFAULT), "--set-file", f"gateway.declarativeConfig={path}", *extra, check=False)
    assert proc.returncode != 0 and "VALUES VALIDATION" in proc.stderr and message in proc.stderr, proc.stderr
