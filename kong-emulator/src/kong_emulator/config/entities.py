"""Kong's declarative entities as the emulator holds them after loading kong.yml.

Field names and defaults follow Kong 3.x (`kong/db/schema/entities/*.lua`). `to_kong()` gives the table that
`kong.router.get_route()` / `get_service()` / `kong.client.get_consumer()` return through the PDK: unset optional
fields are `None` (Kong's `null`), foreign keys are `{"id": ...}`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Service:
    id: str
    name: str | None
    protocol: str = "http"
    host: str = ""
    port: int = 80
    path: str | None = None
    retries: int = 5
    connect_timeout: int = 60000
    write_timeout: int = 60000
    read_timeout: int = 60000
    enabled: bool = True
    tags: list[str] | None = None
    tls_verify: bool | None = None  # None: kong.conf's nginx_proxy_proxy_ssl_verify (services.lua:45)
    tls_verify_depth: int | None = None
    ca_certificates: list[str] | None = None  # ca_certificates ids

    def to_kong(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "protocol": self.protocol,
            "host": self.host,
            "port": self.port,
            "path": self.path,
            "retries": self.retries,
            "connect_timeout": self.connect_timeout,
            "write_timeout": self.write_timeout,
            "read_timeout": self.read_timeout,
            "enabled": self.enabled,
            "tags": self.tags,
            "client_certificate": None,
            "tls_verify": self.tls_verify,
            "tls_verify_depth": self.tls_verify_depth,
            "ca_certificates": self.ca_certificates,
            "ws_id": DEFAULT_WS_ID,
        }


@dataclass
class Route:
    id: str
    name: str | None
    service_id: str | None
    paths: list[str] | None = None
    methods: list[str] | None = None
    hosts: list[str] | None = None
    headers: dict[str, list[str]] | None = None
    protocols: list[str] = field(default_factory=lambda: ["http", "https"])
    strip_path: bool = True
    preserve_host: bool = False
    regex_priority: int = 0
    path_handling: str = "v0"
    https_redirect_status_code: int = 426
    request_buffering: bool = True
    response_buffering: bool = True
    tags: list[str] | None = None
    created_at: int = 0
    snis: list[str] | None = None
    sources: list[dict[str, Any]] | None = None
    destinations: list[dict[str, Any]] | None = None

    def to_kong(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "paths": self.paths,
            "methods": self.methods,
            "hosts": self.hosts,
            "headers": self.headers,
            "protocols": self.protocols,
            "strip_path": self.strip_path,
            "preserve_host": self.preserve_host,
            "regex_priority": self.regex_priority,
            "path_handling": self.path_handling,
            "https_redirect_status_code": self.https_redirect_status_code,
            "request_buffering": self.request_buffering,
            "response_buffering": self.response_buffering,
            "tags": self.tags,
            "snis": self.snis,
            "sources": self.sources,
            "destinations": self.destinations,
            "service": {"id": self.service_id} if self.service_id else None,
            "created_at": self.created_at,
            "ws_id": DEFAULT_WS_ID,
        }


@dataclass
class Consumer:
    id: str
    username: str | None
    custom_id: str | None = None
    tags: list[str] | None = None

    def to_kong(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "username": self.username,
            "custom_id": self.custom_id,
            "tags": self.tags,
            "created_at": 0,
            "ws_id": DEFAULT_WS_ID,
        }


@dataclass
class Target:
    id: str
    target: str  # "host:port"
    weight: int = 100
    tags: list[str] | None = None

    @property
    def host(self) -> str:
        """The host part of `target` (IPv6 without brackets)."""
        host, _, _ = self.target.rpartition(":")
        return host.strip("[]")

    @property
    def port(self) -> int:
        """The port part of `target` (Kong fills in 8000 when the target names none)."""
        return int(self.target.rpartition(":")[2])


@dataclass
class Upstream:
    id: str
    name: str
    targets: list[Target] = field(default_factory=list)
    healthchecks: dict[str, Any] = field(default_factory=dict)
    algorithm: str = "round-robin"
    host_header: str | None = None
    tags: list[str] | None = None


@dataclass
class Plugin:
    """A plugin entity. `config` is the normalised config record (defaults applied, nulls for unset fields)."""

    id: str
    name: str
    config: dict[str, Any]
    enabled: bool = True
    protocols: list[str] = field(default_factory=lambda: ["grpc", "grpcs", "http", "https"])
    route_id: str | None = None
    service_id: str | None = None
    consumer_id: str | None = None
    instance_name: str | None = None
    tags: list[str] | None = None

    @property
    def cache_key(self) -> str:
        """Kong's `__key__`: plugins:<name>:<route>:<service>:<consumer>::<ws>."""
        return f"plugins:{self.name}:{self.route_id or ''}:{self.service_id or ''}:{self.consumer_id or ''}::"


DEFAULT_WS_ID = "00000000-0000-4000-8000-000000000000"


@dataclass
class DeclarativeConfig:
    """Everything kong.yml declares, resolved (foreign keys are ids) and validated."""

    services: dict[str, Service] = field(default_factory=dict)
    routes: list[Route] = field(default_factory=list)
    consumers: dict[str, Consumer] = field(default_factory=dict)
    upstreams: dict[str, Upstream] = field(default_factory=dict)  # keyed by name (a service host may name one)
    ca_certificates: dict[str, str] = field(default_factory=dict)  # id → PEM
    plugins: list[Plugin] = field(default_factory=list)
    unsupported_plugins: list[str] = field(default_factory=list)  # bundled Lua plugins the emulator cannot run
    ignored_entities: list[str] = field(default_factory=list)  # e.g. "certificates[0]": valid Kong, not emulated
    format_version: str = "3.0"
    transform: bool = True  # `_transform`


@dataclass(frozen=True)
class PluginInfo:
    """What a plugin server's query command says of its plugin (Kong reads the capitalised keys)."""

    name: str
    version: str
    priority: int
    phases: tuple[str, ...]
    schema: dict[str, Any]  # {"name": ..., "fields": [{"config": {"type": "record", "fields": [...]}}]}

    @property
    def config_fields(self) -> list[dict[str, Any]]:
        for f in self.schema.get("fields", []):
            if "config" in f:
                return f["config"].get("fields", [])
        return []
