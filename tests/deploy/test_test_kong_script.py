"""`make test-kong` (scripts/test_kong.py) without a Docker engine: one clear message and its own exit code, and the
opt-in suite stays out of `make test`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "test_kong.py"
EXIT_NO_ENGINE = 10


def run_script(tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
    return subprocess.run(
        [sys.executable, str(SCRIPT)], env={**base, **env}, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )


def test_no_docker_engine_stops_with_a_clear_message_and_exit_code(tmp_path):
    dead = tmp_path / "docker.sock"  # nothing listens here
    proc = run_script(tmp_path, DOCKER_HOST=f"unix://{dead}")
    assert proc.returncode == EXIT_NO_ENGINE, proc.stderr
    assert "No Docker engine: make test-kong needs one; the emulator suite is make test" in proc.stderr
    assert f"DOCKER_HOST: unix://{dead}" in proc.stderr
    assert "Traceback" not in proc.stderr and "collected" not in proc.stdout  # pytest never started


def test_a_refused_tcp_engine_is_no_engine_too(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: connections are refused
        proc = run_script(tmp_path, DOCKER_HOST=f"tcp://127.0.0.1:{port}")
    assert proc.returncode == EXIT_NO_ENGINE, proc.stderr
    assert "No Docker engine" in proc.stderr


def test_the_real_kong_suite_is_not_collected_by_make_test():
    env = {k: v for k, v in os.environ.items() if k != "SV_REAL_KONG"}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", "tests/realkong"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 5, proc.stdout + proc.stderr  # "no tests collected", not skipped ones
    assert "realkong" not in proc.stdout and "skipped" not in proc.stdout
