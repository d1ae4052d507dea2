"""Settings for service discovery (Kong upstreams with Kubernetes DNS targets) and TLS from Kong to the services.

`discovery` has the shape of the Helm chart's `discovery` values (helm/storyverse/values.yaml, camelCase keys), so
the chart's block can be handed over as it is: `sv-gateway-config render --helm-values FILE ... --release NAME
--namespace NS` reads it from the chart's values files (`from_helm_values`). `upstream_tls` names the CA that signs
the services' certificates (the chart mounts it from a Secret).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

SVC_SUFFIX = ".svc"  # a host ending so is a Kubernetes Service: the cluster domain is appended


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class HealthChecks(_Strict):
    """Kong's upstream `healthchecks` (kong/db/schema/entities/upstreams.lua in Kong 3.9.1)."""

    activeInterval: int | float = Field(default=5, ge=0, le=65535)  # camelCase: the chart's keys
    unhealthyHttpFailures: int = Field(default=3, ge=0, le=255)
    unhealthyTimeouts: int = Field(default=3, ge=0, le=255)
    healthySuccesses: int = Field(default=2, ge=0, le=255)
    passiveStatuses: list[int] = Field(default_factory=lambda: [502, 503, 504])

    @field_validator("passiveStatuses")
    @classmethod
    def _statuses(cls, value: list[int]) -> list[int]:
        bad = [s for s in value if not 100 <= s <= 999]
        if bad:
            raise ValueError(f"HTTP statuses must be 100-999, got {bad}")
        return value


class Backend(_Strict):
    """One service's target: a Kubernetes Service `host` (`<name>.<namespace>.svc`; `{release}` and `{namespace}`
    are filled in) or any host name or address, its `port`, its health endpoint and how often an idempotent request
    may be retried on another try."""

    host: str = Field(min_length=1)
    port: int = Field(ge=1, le=65535)
    healthPath: str = Field(default="/healthz", pattern=r"^/")
    idempotentRetries: int = Field(default=0, ge=0, le=32767)
    scheme: Literal["http", "https"] = "https"


class Discovery(_Strict):
    enabled: bool = False
    release: str = Field(default="storyverse", pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    namespace: str = Field(default="storyverse", pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    clusterDomain: str = Field(default="cluster.local", min_length=1)
    backends: dict[str, Backend] = Field(default_factory=dict)
    healthchecks: HealthChecks = Field(default_factory=HealthChecks)

    def target_host(self, backend: Backend) -> str:
        host = backend.host.replace("{release}", self.release).replace("{namespace}", self.namespace)
        return f"{host}.{self.clusterDomain}" if host.endswith(SVC_SUFFIX) else host


class UpstreamTls(_Strict):
    """Kong → services over TLS: every https service gets `tls_verify: true`; with a CA file its certificates become
    Kong `ca_certificates` entities the services trust. Without one, nginx has NO default trust store for proxying
    (`lua_ssl_trusted_certificate` serves Lua sockets only, Kong 3.9.1 nginx_kong_inject.lua:3-4): the only fallback
    is `nginx_proxy_proxy_ssl_trusted_certificate` (the chart sets it, and lua_ssl_trusted_certificate for the active
    health checks, from `internalTls.caSecretName`); with neither,
    every handshake fails and Kong answers 502."""

    ca_certificate_file: str | None = None
    verify_depth: int | None = Field(default=None, ge=0, le=64)


def _deep_merge(base: dict[str, Any], layer: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in layer.items():
        out[key] = _deep_merge(out[key], value) if isinstance(out.get(key), dict) and isinstance(value, dict) else value
    return out


def from_helm_values(files: list[str], release: str | None, namespace: str | None) -> dict[str, Any]:
    """The chart's `discovery` values (its values.yaml, then each -f file, merged as Helm merges them) as the
    `discovery` setting, enabled, with the release and namespace its `{release}`/`{namespace}` stand for."""
    merged: dict[str, Any] = {}
    for name in files:
        try:
            values = yaml.safe_load(Path(name).read_text()) or {}
        except OSError as exc:
            raise ValueError(f"helm values {name}: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise ValueError(f"helm values {name}: not YAML: {str(exc).splitlines()[0]}") from None
        merged = _deep_merge(merged, values.get("discovery") or {})
    if not merged:
        raise ValueError(f"no `discovery` values in {', '.join(files)}")
    extra = {k: v for k, v in (("release", release), ("namespace", namespace)) if v}
    return {**merged, "enabled": True, **extra}
