"""Helpers for the end-to-end tests (imported by name: test directories have no packages)."""

from __future__ import annotations

from pathlib import Path

from kong_emulator.testing import PluginEntry

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


def start_auth_service(port: int, env: dict[str, str]):
    """Fresh database, migrations, signing keys, then gunicorn (a real WSGI server) on `port`."""
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
    return subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def repo_plugins() -> list[PluginEntry]:
    """Every plugin kong.conf names (pluginserver_names), as the repository's kong.yml needs them all."""
    from kong_emulator.localenv import read_conf_values

    names = read_conf_values(REPO / "kong.conf")["pluginserver_names"].split(",")
    return [repo_plugin(name.strip()) for name in names]
