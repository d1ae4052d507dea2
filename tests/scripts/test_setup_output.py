"""First-time setup says what it is doing and never buries an error: scripts/apt-install.sh (used by `make services`
and `make test`'s browser step) with a fake apt-get on PATH."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "apt-install.sh"


def _run(tmp_path: Path, apt_get: str) -> subprocess.CompletedProcess[str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "apt-get"
    fake.write_text("#!/bin/sh\n" + apt_get)
    fake.chmod(0o755)
    (bin_dir / "id").write_text("#!/bin/sh\necho 0\n")  # as root, whoever runs the test
    (bin_dir / "id").chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "APT_TAG": "services"}
    return subprocess.run([str(SCRIPT), "redis-server"], env=env, capture_output=True, text=True, timeout=30)


def test_success_is_two_short_lines(tmp_path):
    proc = _run(tmp_path, 'echo "Get:1 http://deb.debian.org lots of apt chatter"\n')
    assert proc.returncode == 0
    lines = proc.stderr.splitlines()
    assert (
        lines[0].startswith("[services] installing redis-server with apt")
        and lines[-1] == "[services] installed redis-server"
    )
    assert "apt chatter" not in proc.stderr


def test_a_failure_shows_apts_own_error(tmp_path):
    proc = _run(
        tmp_path, 'case "$1" in update) exit 0;; esac\necho "E: Unable to locate package redis-server" >&2\nexit 100\n'
    )
    assert proc.returncode != 0
    assert "apt-get failed installing redis-server" in proc.stderr
    assert "E: Unable to locate package redis-server" in proc.stderr
