"""Helpers for the end-to-end tests (imported by name: test directories have no packages)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kong_emulator.testing import EmulatorProcess, PluginEntry, wait_port

REPO = Path(__file__).resolve().parents[2]
PLUGINS = REPO / "kong-plugins" / "plugins"


def repo_plugin(name: str) -> PluginEntry:
    """One of our plugins, run from its dedicated-server entry file as kong.conf runs it."""
    return PluginEntry(name, PLUGINS / f"{name}.py")


AUTH_DIR = REPO / "auth-service"
TEST_KEK = "c3Rvcnl2ZXJzZS1lMmUtdGVzdC1rZXktZW5jcnlwdGlvbi1rZXktMzJi"  # base64 of 40 test bytes, tests only


def auth_env(database: str, redis_db: int, issuer: str, **extra: str) -> dict[str, str]:
    """The auth service's environment for an end-to-end run (its own database and Redis db)."""
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("KONG_")}
    # The suites written before issue 20 create children without opening a verification e-mail; the gate is on by
    # default everywhere else, and test_families_e2e.py (EMAIL_VERIFICATION_REQUIRED="1") tests it.
    env["EMAIL_VERIFICATION_REQUIRED"] = "0"
    env.update(
        FLASK_APP="wsgi:app",
        AUTH_ENV="development",
        DATABASE_URL=f"postgresql+psycopg2://postgres@127.0.0.1:5432/{database}",
        REDIS_URL=f"redis://127.0.0.1:6379/{redis_db}",
        KEY_ENCRYPTION_KEY=TEST_KEK,
        ISSUER=issuer,
        AUDIENCE="storyverse-api",
        ENUMERATION_FLOOR_SECONDS="0",
        LOG_LEVEL="WARNING",
        **extra,
    )
    return env


def tls_args(tls: tuple[Path, Path] | None) -> list[str]:
    """gunicorn's HTTPS-only flags for a (certificate, key) pair (`issue_cert`), none for plain HTTP."""
    return ["--certfile", str(tls[0]), "--keyfile", str(tls[1])] if tls else []


def local_tls(directory: Path, *names: str) -> tuple[Path, dict[str, tuple[Path, Path]]]:
    """The local CA under `directory` (as `make run`'s run/tls/) and a server certificate for each name: (CA file,
    name → (certificate, key)). Trust the CA file (SSL_CERT_FILE for processes, the renderer's upstream_tls)."""
    from kong_emulator.listeners.tls import issue_cert, local_ca

    ca = local_ca(directory)
    return ca.ca_cert, {name: issue_cert(ca, name) for name in names}


def start_auth_service(port: int, env: dict[str, str], tls: tuple[Path, Path] | None = None, log: Path | None = None):
    """Fresh database, migrations, signing keys, then gunicorn (a real WSGI server) on `port`; HTTPS only with a
    `tls` (certificate, key) pair; its stdout and stderr (the JSON logs) go to `log` if given."""
    import subprocess
    import sys

    import psycopg2

    database = env["DATABASE_URL"].rsplit("/", 1)[1]
    conn = psycopg2.connect(host="127.0.0.1", user="postgres", dbname="postgres")
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        cur.execute(f'CREATE DATABASE "{database}"')
    conn.close()
    for step in (["db", "upgrade"], ["keys", "ensure"]):
        subprocess.run([sys.executable, "-m", "flask", *step], cwd=AUTH_DIR, env=env, check=True, capture_output=True)
    argv = [sys.executable, "-m", "gunicorn", "-w", "2", "-k", "gthread", "--threads", "4"]
    argv += ["-b", f"127.0.0.1:{port}", "--chdir", str(AUTH_DIR), "-c", str(AUTH_DIR / "gunicorn.conf.py"), "wsgi:app"]
    if log is None:
        return subprocess.Popen(argv + tls_args(tls), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with log.open("wb") as sink:
        return subprocess.Popen(argv + tls_args(tls), env=env, stdout=sink, stderr=subprocess.STDOUT)


def repo_plugins() -> list[PluginEntry]:
    """Every plugin kong.conf names (pluginserver_names), as the repository's kong.yml needs them all."""
    from kong_emulator.config.localenv import read_conf_values

    names = read_conf_values(REPO / "kong.conf")["pluginserver_names"].split(",")
    return [repo_plugin(name.strip()) for name in names]


def rate_limiting_env(auth: dict[str, str], auth_url: str, sync_interval: int = 1) -> dict[str, str]:
    """The rate limiting service's environment next to an auth service started with `auth` (same database and Redis
    db, its JWKS and issuer), syncing usage every `sync_interval` seconds."""
    env = dict(auth)
    env.update(JWKS_URL=auth_url + "/.well-known/jwks.json", USAGE_SYNC_INTERVAL=str(sync_interval))
    return env


def start_rate_limiting_service(port: int, env: dict[str, str], tls: tuple[Path, Path] | None = None):
    """`sv-ratelimit init-db`, then gunicorn (a real WSGI server) on `port`; HTTPS only with a `tls` pair."""
    import subprocess
    import sys

    cli = [sys.executable, "-m", "storyverse_ratelimit.cli", "init-db"]
    subprocess.run(cli, env=env, check=True, capture_output=True, timeout=60)
    argv = [sys.executable, "-m", "gunicorn", "-w", "2", "-k", "gthread", "--threads", "4"]
    argv += ["-b", f"127.0.0.1:{port}", "storyverse_ratelimit.wsgi:app"]
    return subprocess.Popen(argv + tls_args(tls), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


# -- the emulator in Kong's real mode ----------------------------------------------------------------------------------

LUA_PACKAGE_PATH = f"{REPO / 'kong-plugins'}/?.lua;;"  # sv-edge: kong-plugins/kong/plugins/sv-edge/
# What real Kong would have let through (fail open) and sv-edge's guard stopped, Kong's 500 for a plugin's Lua error
# before the guard (sv-edge answers the guard's 503 for it), or Kong's own 500: a test that did not provoke a plugin
# failure must not see any of them.
KONG_MODE_FAILURES = (
    "sv-edge guard: no decision mark",
    "sv-edge guard: a plugin failed before the guard",
    "An unexpected error occurred",
)


@dataclass
class KongGateway(EmulatorProcess):
    """The emulator as Kong 3.9.1 runs: NOT strict (a plugin-server failure is logged and the request goes on, as
    mp_rpc.lua does), sv-edge loaded from lua_package_path like kong.conf's `plugins = bundled,sv-edge,...`.

    `strict_failures()` keeps its role for the fixtures: the log lines of a plugin failure the test did not expect
    (the guard's 503 line, Kong's 500 for a Lua error)."""

    strict: bool = False

    def start(self, wait: bool = True) -> KongGateway:
        names = ",".join(p.name for p in self.plugins)
        self.conf_extra = {
            "plugins": "bundled,sv-edge" + (f",{names}" if names else ""),
            "lua_package_path": LUA_PACKAGE_PATH,
            **self.conf_extra,
        }
        super().start(wait=False)
        if wait:  # six plugin servers start first: allow for a loaded shared machine
            wait_port(self.port, seconds=90, proc=self.proc)
        return self

    def strict_failures(self) -> list[str]:
        return [line for line in self.output().splitlines() if any(m in line for m in KONG_MODE_FAILURES)]


def render_kong_yml(
    auth_url: str,
    backends: dict[str, str],
    issuer: str,
    redis_db: int,
    rate_limiting_url: str | None = None,
    upstream_ca: str | None = None,
) -> str:
    """The repository's kong.yml (storyverse_gateway_config) for a test stack: its auth service, backends and Redis
    db. An https URL is a TLS hop (`tls_verify: true`); `upstream_ca` (a CA PEM file) is what those hops trust."""
    import storyverse_gateway_config as gateway_config

    services = {"auth": auth_url, **backends}
    if rate_limiting_url:
        services["rate-limiting"] = rate_limiting_url
    settings = gateway_config.load_settings(
        overrides={
            "services": services,
            "jwt": {"jwks_url": auth_url + "/.well-known/jwks.json", "issuer": issuer, "audience": "storyverse-api"},
            "redis": {"redis_host": "127.0.0.1", "redis_port": 6379, "redis_database": redis_db},
            "upstream_tls": {"ca_certificate_file": upstream_ca} if upstream_ca else {},
        }
    )
    return gateway_config.render(settings)
