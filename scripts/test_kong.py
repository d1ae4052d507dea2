"""`make test-kong`: the end-to-end journeys against REAL Kong 3.9 in Docker (opt-in; not part of `make test`).

1. Asks the Docker engine for a ping through the Docker SDK (`docker` package; DOCKER_HOST etc. as the docker CLI).
   No engine: one clear message and exit code 10 (`EXIT_NO_ENGINE`), nothing else is attempted.
2. Otherwise runs `pytest tests/realkong` with SV_REAL_KONG=1 (without it that directory is never collected). The
   suite builds our Kong image, the auth-service image and the sample backend with the SDK, starts them with
   PostgreSQL and Redis on a private network, and points the journeys of tests/e2e at real Kong.

Extra arguments go to pytest: `scripts/test_kong.py -k family -x`. SV_REAL_KONG_KEEP=1 leaves the containers up.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
EXIT_NO_ENGINE = 10
ENABLE_VAR = "SV_REAL_KONG"  # tests/realkong/conftest.py collects nothing unless this is "1"
NO_ENGINE = "No Docker engine: make test-kong needs one; the emulator suite is make test"


def engine_problem(timeout: float = 10.0) -> str | None:
    """None when a Docker engine answers a ping, else why not (one line)."""
    try:
        import docker
    except ImportError:
        return "the `docker` package is not installed (make install)"
    try:
        client = docker.from_env(timeout=timeout)
        try:
            client.ping()
        finally:
            client.close()
    except (
        docker.errors.DockerException,
        OSError,
    ) as exc:  # no socket, refused, bad DOCKER_HOST (requests' errors are OSError)
        return f"{type(exc).__name__}: {exc}"
    return None


def main(argv: list[str]) -> int:
    problem = engine_problem()
    if problem is not None:
        where = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock (default)"
        print(NO_ENGINE, file=sys.stderr)
        print(f"  DOCKER_HOST: {where}\n  {problem}", file=sys.stderr)
        return EXIT_NO_ENGINE
    env = dict(os.environ, **{ENABLE_VAR: "1"})
    cmd = [sys.executable, "-m", "pytest", "tests/realkong", "-p", "no:cacheprovider", "-o", "timeout=1800", *argv]
    print(f"[test-kong] Docker engine found; running {' '.join(cmd[2:])}", flush=True)
    return subprocess.call(cmd, cwd=REPO, env=env)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
