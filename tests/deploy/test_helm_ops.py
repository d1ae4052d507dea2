"""Operating the chart for real: mail goes out over SMTP with TLS and a login from an existing Secret, links point at
public https URLs (the auth service refuses the rest at start)."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest
import yaml
from helm_support import CHART, REPO, containers, deployment, documents, find
from storyverse_auth.config import Settings


@pytest.fixture
def default(renders):
    return documents(renders["default-values"])


def _env(doc: dict, container: str) -> dict[str, dict]:
    return {e["name"]: e for e in containers(doc)[container]["env"]}


@pytest.mark.parametrize("values", ["default-values", "external-redis-values", "existing-secrets-values"])
def test_every_render_sends_mail_over_tls_smtp_never_the_outbox(renders, values):
    env = _env(deployment(documents(renders[values]), "auth"), "authentication")
    assert env["MAIL_BACKEND"]["value"] == "smtp"
    assert env["SMTP_SECURITY"]["value"] in ("starttls", "tls")
    for name in ("RESET_URL", "FAMILY_INVITE_URL", "DEVICE_VERIFICATION_URI"):
        assert env[name]["value"].startswith("https://") and "localhost" not in env[name]["value"]


def _python_regex(kong_path: str) -> str:
    """A kong.yml regex path (`~` prefix, Rust-regex `(?<name>...)` groups) as a Python pattern."""
    return kong_path.removeprefix("~").removesuffix("$").replace("(?<", "(?P<")


def test_the_device_verification_uri_is_the_gateways_parent_device_page(default):
    """The chart's default DEVICE_VERIFICATION_URI is the auth service's own page (its default names the same path on
    the local gateway), on the API's public host, and kong.yml routes that path (GET and POST) to the auth service."""
    uri = urlsplit(_env(deployment(default, "auth"), "authentication")["DEVICE_VERIFICATION_URI"]["value"])
    service_default = urlsplit(Settings.model_fields["DEVICE_VERIFICATION_URI"].default)
    assert uri.path == service_default.path == "/parent/device"
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert (uri.scheme, uri.netloc) == ("https", urlsplit(values["auth"]["issuer"]).netloc)
    kong = yaml.safe_load((REPO / "kong.yml").read_text())
    methods = {
        method
        for service in kong["services"]
        if service["name"] == "auth"
        for route in service.get("routes", [])
        if any(re.fullmatch(_python_regex(path), uri.path) for path in route.get("paths", []))
        for method in route.get("methods", [])
    }
    assert {"GET", "POST"} <= methods, methods


def test_smtp_login_comes_from_the_existing_secret(default):
    env = _env(deployment(default, "auth"), "authentication")
    assert env["SMTP_HOST"]["value"] == "email-smtp.eu-west-1.amazonaws.com"
    assert env["SMTP_PORT"]["value"] == "587"
    assert env["SMTP_USERNAME"]["valueFrom"]["secretKeyRef"] == {"name": "storyverse-ses-smtp", "key": "smtp-username"}
    assert env["SMTP_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "storyverse-ses-smtp", "key": "smtp-password"}
    assert "value" not in env["SMTP_PASSWORD"]


def test_the_migration_job_runs_with_the_same_mail_settings(default):
    job = _env(find(default, "Job", "migrations"), "migrate")
    assert job["MAIL_BACKEND"]["value"] == "smtp"
    assert job["RESET_URL"] == _env(deployment(default, "auth"), "authentication")["RESET_URL"]


CRON = {
    "keys-rotate": ("flask keys rotate", "0 3 1 * *"),
    "keys-prune": ("flask keys prune", "30 3 * * *"),
    "oauth-prune-codes": ("flask oauth-clients prune-codes", "15 4 * * *"),
}


@pytest.mark.parametrize("name", sorted(CRON))
def test_maintenance_cronjobs_run_the_auth_cli(default, name):
    cron = find(default, "CronJob", name)
    command, schedule = CRON[name]
    assert (cron["spec"]["schedule"], cron["spec"]["timeZone"]) == (schedule, "Etc/UTC")
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"  # never two rotations at once
    job = cron["spec"]["jobTemplate"]["spec"]
    pod = job["template"]["spec"]
    [container] = pod["containers"]
    assert container["command"] == ["sh", "-c", command]
    assert container["image"] == deployment(default, "auth")["spec"]["template"]["spec"]["containers"][0]["image"]
    env = {e["name"]: e for e in container["env"]}
    assert env["AUTH_ENV"]["value"] == "production" and env["MAIL_BACKEND"]["value"] == "smtp"
    assert env["DATABASE_URL"]["valueFrom"]["secretKeyRef"]["key"] == "database-url"
    assert pod["securityContext"]["runAsNonRoot"] and container["securityContext"]["readOnlyRootFilesystem"]
    assert job["activeDeadlineSeconds"] == 300


def test_maintenance_pods_reach_only_dns_postgres_and_redis(default):
    policy = find(default, "NetworkPolicy", "maintenance")
    assert policy["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "maintenance"
    assert "ingress" not in policy["spec"]  # Ingress listed in policyTypes with no rule: nothing may connect
    ports = sorted(r["ports"][0]["port"] for r in policy["spec"]["egress"])
    assert ports == [53, 5432, 6379]


def test_cronjobs_can_be_turned_off(helm):
    from helm_support import CHART

    out = helm.template(
        "-f", str(CHART / "ci" / "default-values.yaml"), "--set", "cronJobs.keyRotation.enabled=false",
        "--set", "cronJobs.keyPrune.enabled=false", "--set", "cronJobs.pruneCodes.enabled=false",
    ).stdout  # fmt: skip
    kinds = {(d["kind"], d["metadata"]["name"]) for d in documents(out)}
    assert not any(kind == "CronJob" or name.endswith("-maintenance") for kind, name in kinds)


def test_helm_test_calls_the_jwks_through_the_gateway_over_https(default):
    pod = find(default, "Pod", "helm-test-proxy")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    [container] = pod["spec"]["containers"]
    assert container["command"][3:] == ["storyverse-gateway", "443", "api.storyverse.example", "true"]
    assert "/.well-known/jwks.json" in container["command"][2]
    policy = find(default, "NetworkPolicy", "helm-test-proxy")
    assert policy["spec"]["egress"][1]["ports"] == [{"protocol": "TCP", "port": 8443}]


def test_the_proxy_serves_https_only_with_hsts_by_default(default):
    service = find(default, "Service", "gateway")
    assert [p["name"] for p in service["spec"]["ports"]] == ["https"]  # no plain HTTP on the internet by default
    env = _env(deployment(default, "gateway"), "api-gateway")
    assert env["KONG_NGINX_PROXY_ADD_HEADER"]["value"] == (
        'Strict-Transport-Security "max-age=31536000; includeSubDomains" always'
    )


def test_gunicorn_writes_no_second_access_log(default):
    env = _env(deployment(default, "auth"), "authentication")
    assert "--access-logfile" not in env["GUNICORN_CMD_ARGS"]["value"]
    assert env["PROMETHEUS_MULTIPROC_DIR"]["value"].startswith("/tmp/")  # the pod's writable emptyDir


def test_production_render_acceptance(renders):
    """The issue's acceptance on the fullest production values (monitoring on): no outbox, HTTPS-only edge with
    HSTS, TLS on every hop behind it (test_every_hop_behind_the_proxy_is_tls), the maintenance CronJobs, the alerts
    and the dashboards."""
    docs = documents(renders["external-redis-values"])
    kinds = [(d["kind"], d["metadata"]["name"]) for d in docs]
    auth_env = _env(deployment(docs, "auth"), "authentication")
    assert auth_env["MAIL_BACKEND"]["value"] == "smtp" and auth_env["AUTH_ENV"]["value"] == "production"
    assert "outbox" not in str([d for d in docs if d["kind"] in ("Deployment", "Job", "CronJob")])
    assert [p["name"] for p in find(docs, "Service", "gateway")["spec"]["ports"]] == ["https"]
    assert (
        "Strict-Transport-Security"
        in _env(deployment(docs, "gateway"), "api-gateway")["KONG_NGINX_PROXY_ADD_HEADER"]["value"]
    )
    assert {n for k, n in kinds if k == "CronJob"} == {f"storyverse-{c}" for c in CRON}
    assert ("PrometheusRule", "storyverse-alerts") in kinds
    assert sum(1 for k, n in kinds if k == "ConfigMap" and n.endswith("-dashboard")) == 3
    assert_tls_on_every_hop(docs)


CA = "/etc/storyverse/internal-ca/ca.crt"


def _secret_volumes(doc: dict) -> dict[str, str]:
    return {v["name"]: v["secret"]["secretName"] for v in doc["spec"]["template"]["spec"]["volumes"] if "secret" in v}


def assert_tls_on_every_hop(docs: list[dict]) -> None:
    """Kong -> auth and Kong -> rate limiting over HTTPS with certificates from Secrets, verified against the CA from a
    Secret (Kong, the plugin servers' JWKS fetch, the rate limiting service's); probes and scrapes over HTTPS."""
    for component, container, secret in (
        ("auth", "authentication", "storyverse-auth-tls"),
        ("rate-limiting", "rate-limiting", "storyverse-rate-limiting-tls"),
    ):
        dep = deployment(docs, component)
        spec = containers(dep)[container]
        assert spec["command"][:2] == ["gunicorn", "--bind"]
        assert ["--certfile", "/etc/storyverse/tls/tls.crt", "--keyfile", "/etc/storyverse/tls/tls.key"] == (
            spec["command"][3:7]
        )
        assert _secret_volumes(dep)["server-tls"] == secret
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert spec[probe]["httpGet"]["scheme"] == "HTTPS"
    rls_env = _env(deployment(docs, "rate-limiting"), "rate-limiting")
    assert rls_env["JWKS_URL"]["value"].startswith("https://") and rls_env["SSL_CERT_FILE"]["value"] == CA
    gateway = deployment(docs, "gateway")
    env = _env(gateway, "api-gateway")
    assert env["KONG_NGINX_PROXY_PROXY_SSL_VERIFY"]["value"] == "on"
    assert env["KONG_NGINX_PROXY_PROXY_SSL_TRUSTED_CERTIFICATE"]["value"] == CA
    assert _secret_volumes(gateway)["internal-ca"] == "storyverse-internal-ca"
    for name, spec in containers(gateway).items():
        if name.endswith("-plugin-server"):  # sv-jwt fetches the JWKS over https
            assert {"name": "SSL_CERT_FILE", "value": CA} in spec["env"], name
    assert env["KONG_PROXY_ACCESS_LOG"]["value"] == "off"  # file-log's JSON line is the one request line


def test_every_hop_behind_the_proxy_is_tls(renders):
    for name in ("default-values", "existing-secrets-values"):
        assert_tls_on_every_hop(documents(renders[name]))
    kong_yml = yaml.safe_load(
        find(documents(renders["default-values"]), "ConfigMap", "gateway-config")["data"]["kong.yml"]
    )
    assert all(s["url"].startswith("https://") and s["tls_verify"] is True for s in kong_yml["services"])


def test_cert_manager_issues_the_internal_certificates(renders):
    docs = documents(renders["external-redis-values"])
    certs = {d["spec"]["secretName"]: d for d in docs if d["kind"] == "Certificate"}
    for secret, service in (("storyverse-auth-tls", "auth"), ("storyverse-rate-limiting-tls", "rate-limiting")):
        assert f"storyverse-{service}" in certs[secret]["spec"]["dnsNames"]
        assert certs[secret]["spec"]["issuerRef"] == {
            "name": "storyverse-internal-ca", "kind": "ClusterIssuer", "group": "cert-manager.io",
        }  # fmt: skip


def test_plugin_servers_started_by_kong_get_the_ca_through_nginx_main_env(renders):
    env = _env(deployment(documents(renders["existing-secrets-values"]), "gateway"), "api-gateway")
    assert "SSL_CERT_FILE" in env["KONG_NGINX_MAIN_ENV"]["value"].split("; env ")
