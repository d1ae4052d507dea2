"""`make run`: the whole local stack in the foreground. Ctrl-C stops every process it started.

- the sample backend (stand-in for the stories, characters, universes and generation services)
- the auth service under gunicorn, after applying its migrations (when auth-service/wsgi.py exists)
- the rate limiting service under gunicorn (its tables via `sv-ratelimit init-db`), syncing usage from Redis to
  PostgreSQL every SV_USAGE_SYNC_INTERVAL seconds (default 10) with no command to run
- the Kong emulator on :8000 (HTTP) and :8443 (HTTPS), which starts one plugin server per plugin from kong.conf
  (kong_pluginserver; ``SV_PLUGIN_SERVER=kong-pdk make run`` selects kong-pdk's own server, the fallback);
  the HTTPS listener uses a certificate from a throw-away local CA under run/tls/ (trust run/tls/ca.crt)

TLS on every hop: the auth service, the rate limiting service and the sample backend serve HTTPS only, with
certificates from the same CA (run/tls/<service>.crt); Kong reaches them through run/kong.yml, the repository's
kong.yml rendered with https URLs, `tls_verify` and that CA (`upstream_tls.ca_certificate_file`). The processes
that call a service themselves (plugin servers for the JWKS, the rate limiting service) trust the CA through
SSL_CERT_FILE.

Output: a line per process started, then a banner with the URLs; then one line per request
(`method path status latency request_id`) and the emulator's warnings and errors. The full JSON record of each
request (file-log) goes to run/access.log, each process's output to run/<name>.log (backend, auth, rate-limiting,
emulator); a process that fails to start or exits prints the end of its log.
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
from kong_emulator.listeners.tls import LocalCA, issue_cert, local_ca  # noqa: E402
from request_lines import brief_line, follow, problem_line  # noqa: E402  (scripts/request_lines.py)

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


def _rel(path: Path) -> str:
    return os.path.relpath(path, Path.cwd())


def start(name: str, argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    """`argv` in the background, its output appended to `log` (the terminal keeps the banner and request lines)."""
    print(f"[run] starting {name} (output: {_rel(log)})", flush=True)
    with open(log, "ab") as out:
        return subprocess.Popen(argv, env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def step(argv: list[str], log: Path, **kwargs) -> None:
    """A setup command (migrations, tables) with its output in `log`; CalledProcessError when it fails."""
    with open(log, "ab") as out:
        subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, check=True, **kwargs)


def show_tail(what: str, log: Path, lines: int = 30) -> None:
    """A failure on the terminal: what failed and the end of its output."""
    text = log.read_text(errors="replace").splitlines()[-lines:] if log.exists() else []
    print(f"[run] {what}; the end of {_rel(log)}:", *text, sep="\n", flush=True)


def wait_tls(port: int, ca_file: Path, seconds: float = 60) -> bool:
    """The service on `port` completes a TLS handshake verified against the local CA."""
    import socket
    import ssl

    ctx = ssl.create_default_context(cafile=str(ca_file))
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with (
                socket.create_connection(("127.0.0.1", port), timeout=1) as raw,
                ctx.wrap_socket(raw, server_hostname="127.0.0.1"),
            ):
                return True
        except OSError:
            time.sleep(0.2)
    return False


def service_tls(run_dir: Path) -> tuple[LocalCA, dict[str, tuple[Path, Path]]]:
    """The local CA (the proxy's :8443 certificate) and a server certificate for each local service."""
    ca = local_ca(run_dir / "tls")  # reused while valid; delete run/tls/ for a new CA
    return ca, {name: issue_cert(ca, name) for name in ("auth", "rate-limiting", "backend")}


def render_local_kong_yml(run_dir: Path, ca_file: Path) -> Path:
    """run/kong.yml: the repository's kong.yml for this stack, every service over https verified against the local
    CA, the JSON access log (file-log) in run/access.log."""
    import storyverse_gateway_config as gen_kong_yml

    ports = {"auth": AUTH_PORT, **BACKEND_PORTS, "rate-limiting": RATE_LIMITING_PORT}
    services = {name: f"https://127.0.0.1:{port}" for name, port in ports.items()}
    settings = gen_kong_yml.load_settings(
        overrides={
            "services": services,
            "jwt": {"jwks_url": f"{services['auth']}/.well-known/jwks.json"},
            "upstream_tls": {"ca_certificate_file": str(ca_file)},
            "access_log": str(run_dir / "access.log"),
        }
    )
    out = run_dir / "kong.yml"
    out.write_text(gen_kong_yml.render(settings))
    return out


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
    run_dir = Path(os.environ.get("SV_RUN_DIR") or REPO / "run")  # the CA, run/kong.yml, the access log
    run_dir.mkdir(exist_ok=True)
    procs: list[tuple[str, subprocess.Popen]] = []
    ports = (PROXY_PORT, TLS_PORT, AUTH_PORT, RATE_LIMITING_PORT, *BACKEND_PORTS.values())
    busy = [port for port in ports if _in_use(port)]
    if busy:
        print(f"[run] ports already in use: {busy} (another `make run`?); stop it first", flush=True)
        return 1
    signal.signal(signal.SIGTERM, _interrupt)
    logs = {name: run_dir / f"{name}.log" for name in ("backend", "auth", "rate-limiting", "emulator")}
    for log in logs.values():
        log.write_text("")  # this run's output only
    try:
        ca, certs = service_tls(run_dir)
        if not _start_services(procs, ca.ca_cert, certs, logs):
            return 1
        access_log = run_dir / "access.log"
        access_log.write_text("")
        env = local_environ(
            REPO,
            run_dir,
            KONG_DECLARATIVE_CONFIG=str(render_local_kong_yml(run_dir, ca.ca_cert)),
            KONG_PROXY_LISTEN=f"127.0.0.1:{PROXY_PORT}, 127.0.0.1:{TLS_PORT} ssl",
            KONG_SSL_CERT=str(ca.cert),
            KONG_SSL_CERT_KEY=str(ca.key),
            SSL_CERT_FILE=str(ca.ca_cert),  # plugin servers fetch the JWKS over https
        )
        emulator = [sys.executable, "-m", "kong_emulator", "-c", "kong.conf"]
        procs.append(("emulator", start("the Kong emulator and its plugin servers", emulator, env, logs["emulator"])))
        if not wait_http(f"http://127.0.0.1:{PROXY_PORT}/", 90):
            show_tail("the emulator did not come up", logs["emulator"])
            return 1
        _print_urls(ca.ca_cert, access_log, run_dir, env.get("SV_PLUGIN_SERVER") or "kong-pluginserver")
        follow(
            {access_log: brief_line, logs["emulator"]: problem_line}, lambda: all(p.poll() is None for _, p in procs)
        )
        for name, proc in procs:
            if proc.poll() is not None:
                show_tail(f"{name} exited (status {proc.returncode}); stopping the stack", logs[name])
        return 1
    except KeyboardInterrupt:
        print("\n[run] stopping", flush=True)
        return 0
    finally:
        stop_all(procs)


def _start_services(procs: list, ca_file: Path, certs: dict[str, tuple[Path, Path]], logs: dict[str, Path]) -> bool:
    """The sample backend, the auth service and the rate limiting service, HTTPS only; False (and the end of the
    failing one's log on the terminal) if one did not come up."""
    backend = [f"{n}={p}" for n, p in BACKEND_PORTS.items()]
    backend += ["--tls-cert", str(certs["backend"][0]), "--tls-key", str(certs["backend"][1])]
    argv = [sys.executable, "-m", "sample_backend", *backend]
    procs.append(("backend", start("the sample backend", argv, dict(os.environ), logs["backend"])))
    for name, starter, ports in (
        ("auth", lambda: _start_auth(sys.executable, certs["auth"], logs["auth"]), (AUTH_PORT,)),
        (
            "rate-limiting",
            lambda: _start_rate_limiting(sys.executable, certs["rate-limiting"], ca_file, logs["rate-limiting"]),
            (RATE_LIMITING_PORT, *BACKEND_PORTS.values()),
        ),
    ):
        try:
            procs.append((name, starter()))
        except subprocess.CalledProcessError as exc:
            show_tail(f"{name}: `{' '.join(map(str, exc.cmd[1:]))}` failed", logs[name])
            return False
        for port in ports:
            if not wait_tls(port, ca_file):
                show_tail(
                    f"nothing answers TLS on :{port}", logs["backend" if port in BACKEND_PORTS.values() else name]
                )
                return False
    return True


def _gunicorn_tls(pair: tuple[Path, Path]) -> list[str]:
    return ["--certfile", str(pair[0]), "--keyfile", str(pair[1])]


def _start_auth(py: str, tls: tuple[Path, Path], log: Path) -> subprocess.Popen:
    env = dict(os.environ)
    env.setdefault("FLASK_APP", "wsgi:app")
    env.setdefault("ISSUER", f"http://localhost:{PROXY_PORT}")
    print("[run] preparing the auth service's database and signing keys", flush=True)
    for cmd in (["create-db"], ["db", "upgrade"], ["keys", "ensure"]):
        step([py, "-m", "flask", *cmd], log, cwd=REPO / "auth-service", env=env)
    argv = [py, "-m", "gunicorn", "-w", "2", "-b", f"127.0.0.1:{AUTH_PORT}", "--chdir", "auth-service"]
    argv += ["-c", str(REPO / "auth-service" / "gunicorn.conf.py"), *_gunicorn_tls(tls), "wsgi:app"]
    return start("the auth service", argv, env, log)


def _start_rate_limiting(py: str, tls: tuple[Path, Path], ca_file: Path, log: Path) -> subprocess.Popen:
    """The same database and Redis as the auth service: `DATABASE_URL`/`REDIS_URL` when set, else the same defaults
    (storyverse on 127.0.0.1, Redis db 0, where kong.yml's sv-quota counts)."""
    env = dict(os.environ)
    env.setdefault("ISSUER", f"http://localhost:{PROXY_PORT}")
    env.setdefault("JWKS_URL", f"https://127.0.0.1:{AUTH_PORT}/.well-known/jwks.json")
    env.setdefault("USAGE_SYNC_INTERVAL", USAGE_SYNC_INTERVAL)
    env["SSL_CERT_FILE"] = str(ca_file)  # the JWKS over https
    step([py, "-m", "storyverse_ratelimit.cli", "init-db"], log, cwd=REPO, env=env)
    argv = [py, "-m", "gunicorn", "-w", "2", "-b", f"127.0.0.1:{RATE_LIMITING_PORT}", *_gunicorn_tls(tls)]
    return start("the rate limiting service", [*argv, "storyverse_ratelimit.wsgi:app"], env, log)


def _print_urls(ca_cert: Path, access_log: Path, run_dir: Path, plugin_server: str) -> None:
    ca = _rel(ca_cert)
    lines = [
        "",
        "=" * 78,
        "StoryVerse gateway stack is up (Ctrl-C stops everything)",
        f"  proxy                  http://localhost:{PROXY_PORT}/",
        f"  proxy over TLS         https://localhost:{TLS_PORT}/   (trust {ca})",
        f"  API docs               http://localhost:{PROXY_PORT}/api/v1/docs",
        f"  auth service           https://localhost:{AUTH_PORT}/",
        f"  rate limiting service  https://localhost:{RATE_LIMITING_PORT}/   (usage sync: {USAGE_SYNC_INTERVAL} s)",
        f"  backends (stand-ins)   https://localhost:{min(BACKEND_PORTS.values())}-{max(BACKEND_PORTS.values())}/",
        f"  try: curl -i --cacert {ca} https://localhost:{TLS_PORT}/api/v1/stories",
        "  below: one line per request (method path status latency request_id) and the emulator's warnings;",
        f"  full JSON records in {_rel(access_log)}, each process's output in {_rel(run_dir)}/<name>.log",
        f"  plugin servers: {plugin_server}",
        "=" * 78,
    ]
    print("\n".join(lines), flush=True)


if __name__ == "__main__":
    sys.exit(main())
