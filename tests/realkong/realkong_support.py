"""The real-Kong stack for `make test-kong`, driven with the Docker SDK (`docker` package): images, network, containers.

Images (built from this checkout, cached by the engine between runs):
  storyverse/kong:3.9.1-sv          kong-plugins/Dockerfile (official Kong 3.9 + Python plugin servers + kong.conf)
  storyverse/auth-service:0.1.0     auth-service/Dockerfile
  storyverse/sample-backend:local   docker-compose.yml's inline Dockerfile (one source of truth)
Containers on one user-defined network (names are the DNS names kong.yml uses): postgres, redis, auth (after a
one-shot migration container), backend, kong (DB-less; the image's kong.conf; kong.yml rendered by
storyverse_gateway_config for this network and copied in before start). Host ports are published on random ports so
the same end-to-end assertions reach Kong, the backend and PostgreSQL from the test process.

The build context is a tar of only what the Dockerfiles COPY (the repository has no .dockerignore and holds .venv).
"""

from __future__ import annotations

import io
import os
import sys
import tarfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import requests
import yaml

REPO = Path(__file__).resolve().parents[2]
KONG_IMAGE = "storyverse/kong:3.9.1-sv"
AUTH_IMAGE = "storyverse/auth-service:0.1.0"
BACKEND_IMAGE = "storyverse/sample-backend:local"
POSTGRES_IMAGE = "postgres:16-alpine"
REDIS_IMAGE = "redis:7.2-alpine"
BACKEND_PORTS = {"stories": 9101, "characters": 9102, "universes": 9103, "generation": 9104}
CONTEXT_PATHS = ("constraints.txt", "kong.conf", "kong-plugins", "docs/openapi", "auth-service", "sample-backend")
SKIP_PARTS = {"__pycache__", ".pytest_cache", "build", ".ruff_cache"}


def build_context(extra: dict[str, str] | None = None) -> io.BytesIO:
    """A gzip'd tar of CONTEXT_PATHS (plus `extra` name → text files), for `images.build(custom_context=True)`."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for rel in CONTEXT_PATHS:
            tar.add(REPO / rel, arcname=rel, filter=_keep)
        for name, text in (extra or {}).items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, int(time.time())
            tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    return buf


def _keep(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
    parts = set(Path(info.name).parts)
    if parts & SKIP_PARTS or info.name.endswith((".pyc", ".egg-info")) or ".egg-info" in info.name:
        return None
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info


def backend_dockerfile() -> str:
    """docker-compose.yml's `sample-backend.build.dockerfile_inline`, so compose and this suite build the same."""
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    return compose["services"]["sample-backend"]["build"]["dockerfile_inline"]


def single_file_tar(name: str, text: str, mode: int = 0o644) -> bytes:
    """A tar with `name` (and its directories) for `container.put_archive("/", ...)`."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        parts = Path(name).parts
        for i in range(1, len(parts)):
            d = tarfile.TarInfo("/".join(parts[:i]))
            d.type, d.mode, d.mtime = tarfile.DIRTYPE, 0o755, int(time.time())
            tar.addfile(d)
        data = text.encode()
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.mtime = len(data), mode, int(time.time())
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def render_kong_yml(issuer: str, redis_db: int) -> str:
    """The repository's kong.yml for the stack network: services by container name, Redis in its container."""
    import storyverse_gateway_config as gateway_config

    services = {"auth": "http://auth:8080", **{n: f"http://backend:{p}" for n, p in BACKEND_PORTS.items()}}
    settings = gateway_config.load_settings(
        overrides={
            "services": services,
            "jwt": {
                "jwks_url": "http://auth:8080/.well-known/jwks.json",
                "issuer": issuer,
                "audience": "storyverse-api",
            },
            "redis": {"redis_host": "redis", "redis_port": 6379, "redis_database": redis_db},
        }
    )
    return gateway_config.render(settings)


@dataclass
class RealKongStack:
    """Start with `up()`, stop with `down()`. URLs are for the test process (published ports)."""

    database: str
    redis_db: int
    issuer: str
    auth_extra: dict[str, str] = field(default_factory=dict)
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    client: object = None
    network: object = None
    containers: dict = field(default_factory=dict)

    # -- addresses ------------------------------------------------------------------------------------------------
    @property
    def host(self) -> str:
        """Where published ports answer: the engine's host for tcp:// DOCKER_HOST, else this machine."""
        docker_host = os.environ.get("DOCKER_HOST", "")
        return urlparse(docker_host).hostname if docker_host.startswith(("tcp://", "ssh://")) else "127.0.0.1"

    def port(self, name: str, container_port: str) -> int:
        c = self.containers[name]
        c.reload()
        return int(c.ports[container_port][0]["HostPort"])

    @property
    def proxy_url(self) -> str:
        return f"http://{self.host}:{self.port('kong', '8000/tcp')}"

    @property
    def proxy_tls_port(self) -> int:
        return self.port("kong", "8443/tcp")

    def backend_urls(self) -> dict[str, str]:
        return {n: f"http://{self.host}:{self.port('backend', f'{p}/tcp')}" for n, p in BACKEND_PORTS.items()}

    def auth_container_env(self) -> dict[str, str]:
        from e2e_support import TEST_KEK

        return {
            "AUTH_ENV": "development",
            "FLASK_APP": "wsgi:app",
            "DATABASE_URL": f"postgresql+psycopg2://postgres@postgres:5432/{self.database}",
            "REDIS_URL": f"redis://redis:6379/{self.redis_db}",
            "KEY_ENCRYPTION_KEY": TEST_KEK,
            "ISSUER": self.issuer,
            "AUDIENCE": "storyverse-api",
            "ENUMERATION_FLOOR_SECONDS": "0",
            "LOG_LEVEL": "WARNING",
            **self.auth_extra,
        }

    def host_auth_env(self) -> dict[str, str]:
        """The auth service's environment for CLI runs from the test process (published PostgreSQL and Redis)."""
        from e2e_support import auth_env

        env = auth_env(self.database, self.redis_db, self.issuer, **self.auth_extra)
        env["DATABASE_URL"] = (
            f"postgresql+psycopg2://postgres@{self.host}:{self.port('postgres', '5432/tcp')}/{self.database}"
        )
        env["REDIS_URL"] = f"redis://{self.host}:{self.port('redis', '6379/tcp')}/{self.redis_db}"
        return env

    # -- lifecycle ------------------------------------------------------------------------------------------------
    def up(self) -> RealKongStack:
        import docker

        self.client = docker.from_env(timeout=1800)  # image builds stream for minutes
        self.build_images()
        self.network = self.client.networks.create(f"sv-realkong-{self.run_id}", driver="bridge")
        try:
            self._start_all()
        except BaseException:
            self.dump_logs()
            self.down()
            raise
        return self

    def build_images(self) -> None:
        builds = [
            (KONG_IMAGE, "kong-plugins/Dockerfile", None),
            (AUTH_IMAGE, "auth-service/Dockerfile", None),
            (BACKEND_IMAGE, "sample-backend.Dockerfile", {"sample-backend.Dockerfile": backend_dockerfile()}),
        ]
        for tag, dockerfile, extra in builds:
            print(f"[realkong] building {tag} from {dockerfile}", file=sys.stderr, flush=True)
            self.client.images.build(
                fileobj=build_context(extra), custom_context=True, encoding="gzip", dockerfile=dockerfile,
                tag=tag, rm=True, pull=True,
            )  # fmt: skip

    def _on_network(self, alias: str | None) -> dict:
        """`network` + `networking_config`: on the stack's network, reachable by the short name `alias`."""
        endpoint = self.client.api.create_endpoint_config(aliases=[alias] if alias else None)
        return {"network": self.network.name, "networking_config": {self.network.name: endpoint}}

    def _run(self, name: str, image: str, **kwargs):
        container = self.client.containers.run(
            image, name=f"sv-{name}-{self.run_id}", hostname=name, detach=True, **self._on_network(name), **kwargs
        )
        self.containers[name] = container
        return container

    def _start_all(self) -> None:
        pg_env = {"POSTGRES_USER": "postgres", "POSTGRES_HOST_AUTH_METHOD": "trust", "POSTGRES_DB": self.database}
        pg = self._run("postgres", POSTGRES_IMAGE, ports={"5432/tcp": None}, environment=pg_env)
        self._run(
            "redis", REDIS_IMAGE, ports={"6379/tcp": None}, command=["redis-server", "--save", "", "--appendonly", "no"]
        )
        # over TCP: during initdb the image runs a socket-only server that pg_isready would also call ready
        self._wait_exec(pg, ["pg_isready", "-h", "127.0.0.1", "-U", "postgres", "-d", self.database], "PostgreSQL")
        self._wait_exec(self.containers["redis"], ["redis-cli", "ping"], "Redis")
        migrate = self.client.containers.run(
            AUTH_IMAGE, command=["sh", "-c", "flask db upgrade && flask keys ensure"], detach=True,
            environment=self.auth_container_env(), name=f"sv-auth-migrate-{self.run_id}", **self._on_network(None),
        )  # fmt: skip
        self.containers["auth-migrate"] = migrate
        result = migrate.wait(timeout=300)
        if result.get("StatusCode") != 0:
            raise RuntimeError("auth migrations failed:\n" + migrate.logs().decode(errors="replace")[-4000:])
        auth = self._run("auth", AUTH_IMAGE, environment=self.auth_container_env())
        healthz = "import urllib.request as u; u.urlopen('http://127.0.0.1:8080/healthz', timeout=3)"
        self._wait_exec(auth, ["python", "-c", healthz], "auth service")
        args = ["python", "-m", "sample_backend", "--host", "0.0.0.0", *(f"{n}={p}" for n, p in BACKEND_PORTS.items())]
        self._run("backend", BACKEND_IMAGE, command=args, ports={f"{p}/tcp": None for p in BACKEND_PORTS.values()})
        kong = self.client.containers.create(
            KONG_IMAGE, name=f"sv-kong-{self.run_id}", hostname="kong", **self._on_network("kong"),
            environment={
                "KONG_DECLARATIVE_CONFIG": "/kong/kong.yml",
                # the proxy as the chart runs it: plain HTTP plus TLS with Kong's own generated default certificate
                "KONG_PROXY_LISTEN": "0.0.0.0:8000 reuseport backlog=16384, 0.0.0.0:8443 ssl reuseport backlog=16384",
                "KONG_PROXY_ACCESS_LOG": "/dev/stdout sv_access", "KONG_PROXY_ERROR_LOG": "/dev/stderr",
                "KONG_ADMIN_ERROR_LOG": "/dev/stderr",
            },
            ports={"8000/tcp": None, "8443/tcp": None, "8100/tcp": None},
        )  # fmt: skip
        self.containers["kong"] = kong
        kong.put_archive("/", single_file_tar("kong/kong.yml", render_kong_yml(self.issuer, self.redis_db)))
        kong.start()
        self._wait_http("kong", self.proxy_url + "/", seconds=120)

    def _wait_exec(self, container, cmd: list[str], what: str, seconds: float = 90) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if container.exec_run(cmd).exit_code == 0:
                return
            time.sleep(1)
        raise TimeoutError(f"{what} not ready after {seconds}s")

    def _wait_http(self, name: str, url: str, seconds: float, want_ok: bool = False) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.containers[name].reload()
            if self.containers[name].status == "exited":
                raise RuntimeError(f"{name} exited:\n" + self.containers[name].logs().decode(errors="replace")[-4000:])
            try:
                resp = requests.get(url, timeout=3)
                if resp.ok or not want_ok:
                    return
            except requests.RequestException:
                pass
            time.sleep(1)
        raise TimeoutError(f"{name}: no answer from {url} after {seconds}s")

    def dump_logs(self) -> None:
        for name, c in self.containers.items():
            try:
                text = c.logs(tail=200).decode(errors="replace")
            except Exception as exc:  # noqa: BLE001 - best effort while failing
                text = f"(no logs: {exc})"
            print(f"----- {name} -----\n{text}", file=sys.stderr)

    def down(self) -> None:
        if os.environ.get("SV_REAL_KONG_KEEP") == "1":
            print(f"[realkong] SV_REAL_KONG_KEEP=1: leaving run {self.run_id} up", file=sys.stderr)
            return
        for c in self.containers.values():
            try:
                c.remove(force=True, v=True)
            except Exception as exc:  # noqa: BLE001 - remove what can be removed
                print(f"[realkong] could not remove {c.name}: {exc}", file=sys.stderr)
        if self.network is not None:
            self.network.remove()
        if self.client is not None:
            self.client.close()
