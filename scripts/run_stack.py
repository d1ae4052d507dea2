"""`make run`: the whole local stack in the foreground. Ctrl-C stops every process it started.

- the sample backend (stand-in for the stories, characters, universes and generation services)
- the auth service under gunicorn, after applying its migrations (when auth-service/wsgi.py exists)
- the rate limiting service under gunicorn (its tables via `sv-ratelimit init-db`), syncing usage from Redis to
  PostgreSQL every SV_USAGE_SYNC_INTERVAL seconds (default 10) with no command to run
- the Kong emulator on :8000 (HTTP) and :8443 (HTTPS), which starts one plugin server per plugin from kong.conf
  (kong_pluginserver; ``SV_PLUGIN_SERVER=kong-pdk make run`` selects kong-pdk's own server, the fallback);
  the HTTPS listener uses a certificate from a throw-away local CA under run/tls/ (trust run/tls/ca.crt)
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "kong-emulator" / "src"))

from kong_emulator.config.localenv import read_conf_values, relocate  # noqa: E402
from kong_emulator.listeners.tls import local_ca  # noqa: E402

# The paths kong.conf names in the gateway image (Dockerfile), relocated to this checkout for local runs and tests.
IMAGE_PYTHON = "/opt/storyverse/venv/bin/python3"
IMAGE_PLUGINS = "/opt/storyverse/plugins/"
IMAGE_PREFIX = "/kong_prefix/"
IMAGE_ERROR_TEMPLATES = "/opt/storyverse/error-templates/"
IMAGE_LUA = "/opt/storyverse/lua/"  # custom Lua plugins (sv-edge: kong/plugins/sv-edge/); here kong-plugins/

PROXY_PORT = int(os.environ.get("SV_PROXY_PORT", "8000"))
TLS_PORT = int(os.environ.get("SV_TLS_PORT", "8443"))
AUTH_PORT = int(os.environ.get("SV_AUTH_PORT", "9000"))
RATE_LIMITING_PORT = int(os.environ.get("SV_RATE_LIMITING_PORT", "9200"))  # kong.yml's rate-limiting service
USAGE_SYNC_INTERVAL = os.environ.get("SV_USAGE_SYNC_INTERVAL", "10")
BACKEND_PORTS = {"stories": 9101, "characters": 9102, "universes": 9103, "generation": 9104}


def local_overrides(
    conf_values: dict[str, str],
    prefix: str | Path,
    plugins_dir: str | Path,
    python: str = sys.executable,
    templates_dir: str | Path | None = None,
) -> dict[str, str]:
    """KONG_* variables that move kong.conf's image paths here: interpreter, plugin scripts and prefix of every
    plugin server, and (when `templates_dir` is given) the error templates."""
    moves = {
        IMAGE_PYTHON: python,
        IMAGE_PLUGINS: str(Path(plugins_dir).resolve()) + "/",
        IMAGE_PREFIX: str(Path(prefix).resolve()) + "/",
        IMAGE_LUA: str(Path(plugins_dir).resolve().parent) + "/",  # kong-plugins/plugins/ → kong-plugins/
    }
    if templates_dir is not None:
        moves[IMAGE_ERROR_TEMPLATES] = str(Path(templates_dir).resolve()) + "/"
    return {"KONG_PREFIX": moves[IMAGE_PREFIX], **relocate(conf_values, moves)}


def local_environ(repo: str | Path, prefix: str | Path, **extra: str) -> dict[str, str]:
    """os.environ plus the overrides for running `repo`'s kong.conf from the checkout."""
    plugins = Path(repo) / "kong-plugins"
    env = dict(os.environ)
    conf_values = read_conf_values(Path(repo) / "kong.conf")
    env.update(local_overrides(conf_values, prefix, plugins / "plugins", templates_dir=plugins / "error-templates"))
    env.update(extra)
    return env


def start(name: str, argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
    print(f"[run] starting {name}: {' '.join(argv)}", flush=True)
    return subprocess.Popen(argv, env=env or dict(os.environ), cwd=REPO, start_new_session=True)


def wait_http(url: str, seconds: float = 30) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1):  # noqa: S310 - a local URL we built
                return True
        except OSError as exc:
            if getattr(exc, "code", None):  # an HTTP error status still means it is up
                return True
            time.sleep(0.2)
    return False


def stop_all(procs: list[tuple[str, subprocess.Popen]]) -> None:
    # a second Ctrl-C (or SIGTERM) while stopping must not abandon processes half-way
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # SIGTERM to each leader only: the emulator stops its plugin servers itself (a signal to the whole group would
    # let its supervisor respawn them while it shuts down), gunicorn's master its workers.
    for _, proc in reversed(procs):
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 10
    for name, proc in reversed(procs):
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            print(f"[run] {name} did not stop; killing it", flush=True)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # whatever is left of its process group


def _in_use(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _interrupt(*_args) -> None:
    raise KeyboardInterrupt


def main() -> int:
    py = sys.executable
    run_dir = REPO / "run"
    run_dir.mkdir(exist_ok=True)
    procs: list[tuple[str, subprocess.Popen]] = []
    ports = (PROXY_PORT, TLS_PORT, AUTH_PORT, RATE_LIMITING_PORT, *BACKEND_PORTS.values())
    busy = [port for port in ports if _in_use(port)]
    if busy:
        print(f"[run] ports already in use: {busy} (another `make run`?); stop it first", flush=True)
        return 1
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        backend_args = [f"{n}={p}" for n, p in BACKEND_PORTS.items()]
        procs.append(("sample backend", start("sample backend", [py, "-m", "sample_backend", *backend_args])))
        auth = _start_auth(py)
        if auth:
            procs.append(("auth service", auth))
            procs.append(("rate limiting service", _start_rate_limiting(py)))
        tls = local_ca(run_dir / "tls")  # reused while valid; delete run/tls/ for a new CA
        env = local_environ(
            REPO,
            run_dir,
            KONG_DECLARATIVE_CONFIG=str(REPO / "kong.yml"),
            KONG_PROXY_LISTEN=f"127.0.0.1:{PROXY_PORT}, 127.0.0.1:{TLS_PORT} ssl",
            KONG_SSL_CERT=str(tls.cert),
            KONG_SSL_CERT_KEY=str(tls.key),
        )
        print(f"[run] plugin servers: {env.get('SV_PLUGIN_SERVER') or 'kong-pluginserver'}", flush=True)
        procs.append(("kong emulator", start("kong emulator", [py, "-m", "kong_emulator", "-c", "kong.conf"], env)))
        if not wait_http(f"http://127.0.0.1:{PROXY_PORT}/"):
            print("[run] the emulator did not come up; see its output above", flush=True)
            return 1
        _print_urls(auth is not None, tls.ca_cert)
        while all(p.poll() is None for _, p in procs):
            time.sleep(0.5)
        dead = [n for n, p in procs if p.poll() is not None]
        print(f"[run] {', '.join(dead)} exited; stopping the stack", flush=True)
        return 1
    except KeyboardInterrupt:
        print("\n[run] stopping", flush=True)
        return 0
    finally:
        stop_all(procs)


def _start_auth(py: str) -> subprocess.Popen | None:
    if not (REPO / "auth-service" / "wsgi.py").exists():
        return None
    env = dict(os.environ)
    env.setdefault("FLASK_APP", "wsgi:app")
    env.setdefault("ISSUER", f"http://localhost:{PROXY_PORT}")
    for step in (["create-db"], ["db", "upgrade"], ["keys", "ensure"]):
        subprocess.run([py, "-m", "flask", *step], cwd=REPO / "auth-service", env=env, check=True)
    argv = [py, "-m", "gunicorn", "-w", "2", "-b", f"127.0.0.1:{AUTH_PORT}", "--chdir", "auth-service"]
    argv += ["-c", str(REPO / "auth-service" / "gunicorn.conf.py"), "wsgi:app"]  # its log redaction
    return start("auth service", argv, env)


def _start_rate_limiting(py: str) -> subprocess.Popen:
    """The same database and Redis as the auth service: `DATABASE_URL`/`REDIS_URL` when set, else the same defaults
    (storyverse on 127.0.0.1, Redis db 0, where kong.yml's sv-quota counts)."""
    env = dict(os.environ)
    env.setdefault("ISSUER", f"http://localhost:{PROXY_PORT}")
    env.setdefault("JWKS_URL", f"http://127.0.0.1:{AUTH_PORT}/.well-known/jwks.json")
    env.setdefault("USAGE_SYNC_INTERVAL", USAGE_SYNC_INTERVAL)
    subprocess.run([py, "-m", "storyverse_ratelimit.cli", "init-db"], cwd=REPO, env=env, check=True)
    argv = [py, "-m", "gunicorn", "-w", "2", "-b", f"127.0.0.1:{RATE_LIMITING_PORT}", "storyverse_ratelimit.wsgi:app"]
    return start("rate limiting service", argv, env)


def _print_urls(auth: bool, ca_cert: Path) -> None:
    print("\n[run] StoryVerse gateway stack is up:", flush=True)
    print(
        f"  proxy (Kong emulator)  http://127.0.0.1:{PROXY_PORT}/  e.g. curl -i localhost:{PROXY_PORT}/api/v1/stories"
    )
    ca = os.path.relpath(ca_cert, Path.cwd())
    print(f"  proxy over TLS         https://localhost:{TLS_PORT}/  (TLS 1.2+, certificate from the local CA {ca})")
    print(f"                         e.g. curl -i --cacert {ca} https://localhost:{TLS_PORT}/api/v1/stories")
    if auth:
        print(f"  auth service           http://127.0.0.1:{AUTH_PORT}/")
        print(
            f"  rate limiting service  http://127.0.0.1:{RATE_LIMITING_PORT}/  (usage synced every "
            f"{USAGE_SYNC_INTERVAL} s; /metrics)"
        )
    for name, port in BACKEND_PORTS.items():
        print(f"  {name:<22} http://127.0.0.1:{port}/  (sample backend, stand-in)")
    print("  Ctrl-C stops everything.\n", flush=True)


if __name__ == "__main__":
    sys.exit(main())
