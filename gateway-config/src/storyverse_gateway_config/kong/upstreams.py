"""Kong services, upstreams and CA certificates from the settings: where each service's requests go and how.

Without discovery (local runs and tests) each service has its `url`. With `discovery.enabled` each service gets an
upstream named `<service>.upstream` whose one target is the service's Kubernetes DNS name (Kong resolves it and
honours the record's TTL; a headless Service gives one target address per pod), with active health checks on its
health endpoint and passive ones on proxied answers. Kong's `retries` is per service, not per method, and a replayed
POST would create (and charge) twice: the service of a backend keeps `retries: 0`, and when the backend allows
idempotent retries its read-only routes (GET/HEAD only) move to a second service, `<service>-read`, on the same
upstream with `retries: idempotentRetries`.

An https service is verified (`tls_verify: true`) against the CA certificates of `upstream_tls.ca_certificate_file`,
rendered as Kong `ca_certificates` entities (one per certificate in the file, with ids derived from the certificate,
so a re-render is identical); without a CA file Kong's own trust store (`lua_ssl_trusted_certificate`) applies.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from storyverse_gateway_config import routes as R
from storyverse_gateway_config.discovery import Backend, Discovery
from storyverse_gateway_config.settings import SettingsError

READ_METHODS = frozenset({"GET", "HEAD"})
UPSTREAM_SUFFIX = ".upstream"
CA_NAMESPACE = uuid.UUID("6f0d8a52-3c1e-4b7a-9d55-7c2f4e9b1a30")  # ids of our ca_certificates: uuid5(this, sha256)
PEM = re.compile(r"-----BEGIN CERTIFICATE-----\s.*?-----END CERTIFICATE-----", re.S)


def discovery_of(settings: dict[str, Any]) -> Discovery:
    return Discovery.model_validate(settings["discovery"])


def base_url(name: str, settings: dict[str, Any]) -> str:
    """Where a service answers, for callers that bypass Kong's balancer (sv-expand's own requests)."""
    discovery = discovery_of(settings)
    if not discovery.enabled:
        return settings["services"][name]
    backend = discovery.backends[name]
    return f"{backend.scheme}://{discovery.target_host(backend)}:{backend.port}"


def ca_certificates(settings: dict[str, Any]) -> list[dict[str, Any]]:
    """The `ca_certificates` entities of upstream_tls.ca_certificate_file: CA certificates that have not expired."""
    path = settings["upstream_tls"].get("ca_certificate_file")
    if not path:
        return []
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise SettingsError(f"upstream_tls.ca_certificate_file {path}: {exc.strerror}") from None
    blocks = PEM.findall(text)
    if not blocks:
        raise SettingsError(f"upstream_tls.ca_certificate_file {path}: no PEM certificate in it")
    return [_ca_entity(block, path) for block in blocks]


def _ca_entity(pem: str, path: str) -> dict[str, Any]:
    """Kong's checks (kong/db/schema/entities/ca_certificates.lua): a CA (basic constraint), not expired."""
    try:
        cert = x509.load_pem_x509_certificate(pem.encode())
    except ValueError:
        raise SettingsError(f"upstream_tls.ca_certificate_file {path}: a certificate that does not parse") from None
    try:
        is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        is_ca = False
    subject = cert.subject.rfc4514_string()
    if not is_ca:
        raise SettingsError(f"upstream_tls.ca_certificate_file {path}: {subject} is not a CA certificate")
    if cert.not_valid_after_utc < dt.datetime.now(dt.UTC):
        raise SettingsError(f"upstream_tls.ca_certificate_file {path}: {subject} expired")
    digest = hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest()
    return {"id": str(uuid.uuid5(CA_NAMESPACE, digest)), "cert": pem.strip() + "\n", "tags": ["storyverse"]}


def tls_fields(scheme: str, settings: dict[str, Any], ca_ids: list[str]) -> dict[str, Any]:
    """An https service verifies the service's certificate; plain http gets nothing (Kong refuses the fields)."""
    if scheme != "https":
        return {}
    fields: dict[str, Any] = {"tls_verify": True}
    depth = settings["upstream_tls"].get("verify_depth")
    if depth is not None:
        fields["tls_verify_depth"] = depth
    if ca_ids:
        fields["ca_certificates"] = list(ca_ids)
    return fields


def _service(name: str, url: str, retries: int, settings: dict[str, Any], ca_ids: list[str]) -> dict[str, Any]:
    connect, read = R.SERVICE_TIMEOUTS_MS[name.removesuffix("-read")]
    return {
        "name": name,
        "url": url,
        "retries": retries,
        "connect_timeout": connect,
        "read_timeout": read,
        "write_timeout": read,
        **tls_fields(urlsplit(url).scheme, settings, ca_ids),
        "routes": [],
    }


def is_read_only(route: dict[str, Any]) -> bool:
    return bool(route.get("methods")) and set(route["methods"]) <= READ_METHODS


def kong_services(name: str, routes: list[dict], settings: dict[str, Any], ca_ids: list[str]) -> list[dict[str, Any]]:
    """The Kong service(s) of one backend with its routes: one (retries 0), or two when reads may be retried."""
    discovery = discovery_of(settings)
    if not discovery.enabled:
        svc = _service(name, settings["services"][name], 0, settings, ca_ids)
        return [{**svc, "routes": routes}]
    backend = discovery.backends[name]
    url = f"{backend.scheme}://{name}{UPSTREAM_SUFFIX}:{backend.port}"
    reads = [rt for rt in routes if is_read_only(rt)] if backend.idempotentRetries else []
    writes = [rt for rt in routes if not any(rt is r for r in reads)]
    out = [{**_service(name, url, 0, settings, ca_ids), "routes": writes}]
    if reads:
        out.append({**_service(f"{name}-read", url, backend.idempotentRetries, settings, ca_ids), "routes": reads})
    return out


def _active(backend: Backend, discovery: Discovery) -> dict[str, Any]:
    hc = discovery.healthchecks
    active: dict[str, Any] = {"type": backend.scheme, "http_path": backend.healthPath, "timeout": 2}
    if backend.scheme == "https":
        active["https_verify_certificate"] = True  # against Kong's lua_ssl_trusted_certificate (the chart adds the CA)
    active["healthy"] = {"interval": hc.activeInterval, "successes": hc.healthySuccesses, "http_statuses": [200]}
    active["unhealthy"] = {
        "interval": hc.activeInterval,
        "http_failures": hc.unhealthyHttpFailures,
        "tcp_failures": hc.unhealthyHttpFailures,
        "timeouts": hc.unhealthyTimeouts,
        "http_statuses": [404, 429, 500, 501, 502, 503, 504, 505],
    }
    return active


def _passive(backend: Backend, discovery: Discovery) -> dict[str, Any]:
    """Counted on proxied answers. Only with active checks: a target taken out passively comes back only through an
    active probe (lua-resty-healthcheck), so without them the passive circuit breaker stays off."""
    hc = discovery.healthchecks
    on = hc.activeInterval > 0
    return {
        "type": backend.scheme,
        "unhealthy": {
            "http_statuses": list(hc.passiveStatuses),
            "http_failures": hc.unhealthyHttpFailures if on else 0,
            "tcp_failures": hc.unhealthyHttpFailures if on else 0,
            "timeouts": hc.unhealthyTimeouts if on else 0,
        },
    }


def upstreams(settings: dict[str, Any]) -> list[dict[str, Any]]:
    """One upstream per service (discovery on), its target the service's DNS name and port."""
    discovery = discovery_of(settings)
    if not discovery.enabled:
        return []
    out = []
    for name in settings["services"]:
        backend = discovery.backends[name]
        out.append(
            {
                "name": f"{name}{UPSTREAM_SUFFIX}",
                "algorithm": "round-robin",
                "healthchecks": {"active": _active(backend, discovery), "passive": _passive(backend, discovery)},
                "targets": [{"target": f"{discovery.target_host(backend)}:{backend.port}", "weight": 100}],
                "tags": [name],
            }
        )
    return out
