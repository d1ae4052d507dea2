"""A deployment's settings for the kong.yml renderer: where each service lives, how the plugins reach the auth
service and Redis, the API versions. Validated with pydantic; a bad file is one error line (`SettingsError`).

`LOCAL` is what `make run` starts (scripts/run_stack.py). A settings file (gateway-config/examples/production.yaml
documents every key) is applied over it key by key: `services`, `jwt`, `redis`, `discovery` and `upstream_tls`
merge key by key (nested mappings too), any other key replaces the local value. Keys not given keep their local
value.
"""

from __future__ import annotations

import copy
import datetime as dt
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from storyverse_gateway_config.discovery import Discovery, UpstreamTls
from storyverse_gateway_config.routes import SERVICE_TIMEOUTS_MS

SERVICE_NAMES = tuple(SERVICE_TIMEOUTS_MS)
VERSION_STATUSES = ("current", "deprecated", "retired")

LOCAL: dict[str, Any] = {
    "services": {
        "auth": "http://127.0.0.1:9000",
        "stories": "http://127.0.0.1:9101",
        "characters": "http://127.0.0.1:9102",
        "universes": "http://127.0.0.1:9103",
        "generation": "http://127.0.0.1:9104",
        "rate-limiting": "http://127.0.0.1:9200",
    },
    "jwt": {
        "jwks_url": "http://127.0.0.1:9000/.well-known/jwks.json",
        "issuer": "http://localhost:8000",
        "audience": "storyverse-api",
    },
    "redis": {"redis_host": "127.0.0.1", "redis_port": 6379},
    "cors_origins": ["http://localhost:3000", "http://127.0.0.1:3000"],
    # API versions, oldest first. Exactly one is `current` (it also answers on the unversioned /api/... alias).
    # Retiring one: `deprecated` (with `deprecation`, `sunset` dates and `successor`) keeps serving it with
    # Deprecation/Sunset/Link headers; `retired` answers 410 Gone on all of its paths.
    "versions": [{"name": "v1", "status": "current"}],
    "docs_url": "https://docs.storyverse.example/api",
    # file-log's target: one JSON line per request. /dev/stdout in the image (the container's log stream); tests
    # point it at a temporary file.
    "access_log": "/dev/stdout",
    # Multiplies every rate limit, daily quota and sv-quota's abuse threshold. 1 in every deployment; a test that
    # must never meet a limit (the schemathesis run, tests/e2e/test_gateway_schemathesis.py) raises it.
    "limit_scale": 1,
    # Kong upstreams per service with Kubernetes DNS targets, active and passive health checks, retries only for
    # idempotent routes (gateway-config/examples/production.yaml explains each key). Off locally: each service's
    # `url` above is where Kong sends its requests.
    "discovery": {"enabled": False},
    # TLS from Kong to the services: the CA that signs their certificates (https services only).
    "upstream_tls": {},
}
MERGED = ("services", "jwt", "redis", "discovery", "upstream_tls")  # merged key by key; the others replaced whole


class SettingsError(SystemExit):
    """A bad settings file or override: its message is one line naming the setting."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Jwt(_Strict):
    """sv-jwt's verification settings (its schema: kong-plugins/src/storyverse_plugins/jwt_auth/schema.py)."""

    jwks_url: str = Field(pattern=r"^https?://")
    issuer: str = Field(min_length=1)
    audience: str = Field(min_length=1)
    algorithms: list[str] | None = None
    leeway: int | None = Field(default=None, ge=0)
    realm: str | None = None
    jwks_timeout: float | None = Field(default=None, gt=0)
    jwks_cache_ttl: int | None = Field(default=None, ge=0)
    jwks_refresh_min_interval: int | None = Field(default=None, ge=0)
    cache_size: int | None = Field(default=None, ge=0)


class Redis(_Strict):
    """How sv-jwt and sv-quota reach Redis (storyverse_plugins.common.schema_fields)."""

    redis_host: str = Field(min_length=1)
    redis_port: int = Field(ge=1, le=65535)
    redis_database: int | None = Field(default=None, ge=0)
    redis_username: str | None = None
    redis_password: str | None = None
    redis_ssl: bool | None = None
    redis_timeout_ms: int | None = Field(default=None, ge=1)
    redis_cluster_nodes: list[str] | None = None


class Version(_Strict):
    name: str = Field(pattern=r"^v[0-9]+$")
    status: str
    deprecation: dt.date | None = None
    sunset: dt.date | None = None
    successor: str | None = None

    @field_validator("status")
    @classmethod
    def _known_status(cls, value: str) -> str:
        if value not in VERSION_STATUSES:
            raise ValueError(f"unknown status {value!r} (one of {', '.join(VERSION_STATUSES)})")
        return value

    @model_validator(mode="after")
    def _retirement_dates(self) -> Version:
        if self.status != "current" and None in (self.deprecation, self.sunset, self.successor):
            raise ValueError(f"a {self.status} version needs deprecation, sunset and successor")
        return self


class Settings(_Strict):
    services: dict[Literal[SERVICE_NAMES], str]  # type: ignore[valid-type]
    jwt: Jwt
    redis: Redis
    cors_origins: list[str]
    versions: list[Version] = Field(min_length=1)
    docs_url: str
    access_log: str = Field(min_length=1)
    limit_scale: int = Field(ge=1)
    discovery: Discovery
    upstream_tls: UpstreamTls

    @field_validator("services")
    @classmethod
    def _urls(cls, value: dict[str, str]) -> dict[str, str]:
        for name, url in value.items():
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"{name}: {url!r} is not an http(s) URL")
        return value

    @model_validator(mode="after")
    def _every_service_discovered(self) -> Settings:
        missing = [name for name in self.services if name not in self.discovery.backends]
        unknown = [name for name in self.discovery.backends if name not in SERVICE_NAMES]
        if unknown or (missing and self.discovery.enabled):
            raise ValueError(f"discovery.backends: missing {missing}, unknown {unknown}")
        return self

    @field_validator("versions")
    @classmethod
    def _one_current(cls, value: list[Version]) -> list[Version]:
        current = [v.name for v in value if v.status == "current"]
        if len(current) != 1:
            raise ValueError(f"exactly one API version must be current, got {current}")
        return value


def _merge_into(base: dict[str, Any], layer: dict[str, Any]) -> None:
    for key, value in layer.items():
        if isinstance(base.get(key), dict) and isinstance(value, dict):
            _merge_into(base[key], value)
        else:
            base[key] = value


def _merge(layers: list[dict[str, Any]]) -> dict[str, Any]:
    merged = copy.deepcopy(LOCAL)
    for layer in layers:
        if not isinstance(layer, dict):
            raise SettingsError(f"settings must be a mapping of setting names, got {type(layer).__name__}")
        for key, value in layer.items():
            if key not in merged:
                raise SettingsError(f"unknown setting {key!r} (known: {', '.join(merged)})")
            if key in MERGED and isinstance(value, dict):
                _merge_into(merged[key], copy.deepcopy(value))
            else:
                merged[key] = value
    return merged


def _one_line(error: ValidationError, source: str) -> str:
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "settings"
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        message = "unknown setting"
    more = f" (and {error.error_count() - 1} more)" if error.error_count() > 1 else ""
    return f"{source}: {where}: {message}{more}"


def _relative_to(layer: Any, base: Path) -> Any:
    """A relative upstream_tls.ca_certificate_file in a settings file is relative to that file."""
    tls = layer.get("upstream_tls") if isinstance(layer, dict) else None
    if isinstance(tls, dict) and isinstance(tls.get("ca_certificate_file"), str):
        tls["ca_certificate_file"] = str(base / tls["ca_certificate_file"])  # an absolute path stays as it is
    return layer


def read_file(path: str | Path) -> dict[str, Any]:
    try:
        return _relative_to(yaml.safe_load(Path(path).read_text()) or {}, Path(path).resolve().parent)
    except OSError as exc:
        raise SettingsError(f"settings file {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise SettingsError(f"settings file {path}: not YAML: {str(exc).splitlines()[0]}") from None


def load_settings(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """LOCAL, updated from a YAML file and/or a dict, validated; returned as the plain dict the renderer reads."""
    layers = [read_file(path)] if path else []
    merged = _merge([*layers, overrides or {}])
    try:
        settings = Settings.model_validate(merged)
    except ValidationError as exc:
        raise SettingsError(_one_line(exc, f"settings {path}" if path else "settings")) from None
    return settings.model_dump(exclude_none=True)
