"""Service discovery (issue 16) and TLS to the services (issue 18) in a rendered kong.yml: the production example
and the chart's discovery values."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from storyverse_gateway_config import SettingsError, build, cli, load_settings

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
PRODUCTION = EXAMPLES / "production.yaml"
CHART_VALUES = Path(__file__).resolve().parents[2] / "helm" / "storyverse" / "values.yaml"
WRITES = {"POST", "PUT", "PATCH", "DELETE"}


@pytest.fixture(scope="module")
def production() -> dict:
    return build(load_settings(PRODUCTION))


def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def test_production_has_tls_on_every_hop_to_a_service(production):
    ca_ids = [ca["id"] for ca in production["ca_certificates"]]
    assert ca_ids and all("-----BEGIN CERTIFICATE-----" in ca["cert"] for ca in production["ca_certificates"])
    assert {s["name"] for s in production["services"]} >= {"auth", "stories", "characters", "universes", "generation"}
    for svc in production["services"]:
        assert svc["url"].startswith("https://"), svc["name"]
        assert svc["tls_verify"] is True and svc["ca_certificates"] == ca_ids, svc["name"]
    for upstream in production["upstreams"]:
        active = upstream["healthchecks"]["active"]
        assert active["type"] == "https" and active["https_verify_certificate"] is True
    # the plugins' own calls to services (sv-jwt's JWKS, sv-expand's expansions) are https too
    urls = [s for s in [*_strings(production["plugins"]), *_strings(production["services"])] if "://" in s]
    service_urls = [u for u in urls if ".svc." in u]
    assert service_urls and all(u.startswith("https://") for u in service_urls), service_urls


def _routes(config):
    for svc in config["services"]:
        for rt in svc["routes"]:
            yield svc, rt


def test_only_idempotent_routes_are_retried(production):
    retried = {s["name"] for s in production["services"] if s["retries"] > 0}
    assert retried == {"auth-read", "stories-read", "characters-read", "universes-read", "rate-limiting-read"}
    for svc, rt in _routes(production):
        methods = set(rt.get("methods") or ["*"])
        if svc["retries"] > 0:
            assert methods <= {"GET", "HEAD"}, (svc["name"], rt["name"])
        if methods & WRITES or "*" in methods:
            assert svc["retries"] == 0, (svc["name"], rt["name"])
    generation = [s for s in production["services"] if s["name"].startswith("generation")]
    assert [s["retries"] for s in generation] == [0]


def test_one_upstream_per_backend_with_dns_targets_and_health_checks(production):
    by_name = {u["name"]: u for u in production["upstreams"]}
    assert set(by_name) == {f"{n}.upstream" for n in load_settings(PRODUCTION)["services"]}
    auth = by_name["auth.upstream"]
    assert auth["targets"] == [{"target": "storyverse-auth.storyverse.svc.cluster.local:443", "weight": 100}]
    active, passive = auth["healthchecks"]["active"], auth["healthchecks"]["passive"]
    assert active["http_path"] == "/healthz" and active["healthy"]["interval"] == 5
    assert active["unhealthy"]["http_failures"] == 3 and active["healthy"]["successes"] == 2
    assert passive["unhealthy"]["http_statuses"] == [502, 503, 504] and passive["unhealthy"]["timeouts"] == 3
    for svc in production["services"]:  # every service goes through its backend's upstream
        assert svc["url"].split("//")[1].startswith(svc["name"].removesuffix("-read") + ".upstream:")


def test_the_charts_discovery_values_drive_the_targets(tmp_path):
    mine = tmp_path / "my-values.yaml"
    stories = {"host": "tales.{namespace}.svc", "port": 8443, "healthPath": "/ready", "idempotentRetries": 1}
    mine.write_text(yaml.safe_dump({"discovery": {"clusterDomain": "k8s.example", "backends": {"stories": stories}}}))
    out = tmp_path / "kong.yml"
    args = ["--helm-values", str(CHART_VALUES), "--helm-values", str(mine), "--release", "sv", "--namespace", "prod"]
    assert cli.main(["render", *args, "-o", str(out)]) == 0
    ups = {u["name"]: u for u in yaml.safe_load(out.read_text())["upstreams"]}
    assert ups["auth.upstream"]["targets"][0]["target"] == "sv-auth.prod.svc.k8s.example:443"  # chart default: TLS
    stories = ups["stories.upstream"]
    assert stories["targets"][0]["target"] == "tales.prod.svc.k8s.example:8443"
    assert stories["healthchecks"]["active"]["http_path"] == "/ready"
    assert cli.main(["check", *args, "-o", str(out)]) == 0


def test_discovery_off_keeps_each_services_url():
    config = build(load_settings())
    assert "upstreams" not in config and "ca_certificates" not in config
    assert all(s["url"].startswith("http://127.0.0.1:") and s["retries"] == 0 for s in config["services"])


def test_no_active_checks_means_no_passive_circuit_breaker():
    settings = load_settings(PRODUCTION, {"discovery": {"healthchecks": {"activeInterval": 0}}})
    for upstream in build(settings)["upstreams"]:
        unhealthy = upstream["healthchecks"]["passive"]["unhealthy"]
        assert (unhealthy["http_failures"], unhealthy["tcp_failures"], unhealthy["timeouts"]) == (0, 0, 0)


def _cert(tmp_path: Path, *, ca: bool, days: int) -> Path:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test")])
    now = dt.datetime.now(dt.UTC)
    builder = x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
    builder = builder.serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=400))
    builder = builder.not_valid_after(now + dt.timedelta(days=days))
    builder = builder.add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    path = tmp_path / "ca.pem"
    path.write_bytes(builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))
    return path


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: _cert(p, ca=False, days=30), "is not a CA certificate"),
        (lambda p: _cert(p, ca=True, days=-1), "expired"),
        (lambda p: p / "missing.pem", "No such file"),
        (lambda p: (p / "x.pem").write_text("not a certificate") and p / "x.pem", "no PEM certificate"),
    ],
)
def test_a_bad_ca_file_is_refused(tmp_path, make, message):
    path = make(tmp_path)
    with pytest.raises(SettingsError, match=message):
        build(load_settings(PRODUCTION, {"upstream_tls": {"ca_certificate_file": str(path)}}))


def test_the_ca_ids_are_stable_and_a_chain_gives_one_entity_per_certificate(tmp_path):
    one = _cert(tmp_path, ca=True, days=30).read_text()
    both = tmp_path / "chain.pem"
    both.write_text(one + (EXAMPLES / "example-upstream-ca.pem").read_text())
    settings = load_settings(PRODUCTION, {"upstream_tls": {"ca_certificate_file": str(both)}})
    first, again = build(settings), build(settings)
    assert len(first["ca_certificates"]) == 2 and first["ca_certificates"] == again["ca_certificates"]
    assert first["services"][0]["ca_certificates"] == [c["id"] for c in first["ca_certificates"]]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"discovery": {"backends": {"auth": None}}}, "discovery.backends"),
        ({"discovery": {"backends": {"billing": {"host": "b", "port": 1}}}}, "unknown"),
        ({"discovery": {"backends": {"auth": {"scheme": "ftp"}}}}, "discovery.backends.auth.scheme"),
        ({"discovery": {"healthchecks": {"passiveStatuses": [42]}}}, "100-999"),
        ({"upstream_tls": {"verify_depth": 99}}, "upstream_tls.verify_depth"),
    ],
)
def test_bad_discovery_settings_are_one_line(overrides, message):
    with pytest.raises(SettingsError, match=message) as err:
        load_settings(PRODUCTION, overrides)
    assert "\n" not in str(err.value)


def test_a_local_https_service_is_verified_against_the_given_ca(tmp_path):
    """What `make run`/e2e use for TLS without discovery: the URL's scheme per service, and the CA file."""
    ca = _cert(tmp_path, ca=True, days=30)
    settings = load_settings(
        overrides={"services": {"auth": "https://127.0.0.1:9443"}, "upstream_tls": {"ca_certificate_file": str(ca)}}
    )
    config = build(settings)
    services = {s["name"]: s for s in config["services"]}
    [ca_entity] = config["ca_certificates"]
    assert services["auth"]["tls_verify"] is True and services["auth"]["ca_certificates"] == [ca_entity["id"]]
    assert "tls_verify" not in services["stories"] and "ca_certificates" not in services["stories"]  # still http
    assert "upstreams" not in config
