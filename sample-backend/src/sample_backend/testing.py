"""Run the stand-in services as a real process for tests: `with running("echo") as urls: urls["echo"]`."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(port: int, proc: subprocess.Popen, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"sample backend exited with {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"sample backend not listening on {port}")


@contextmanager
def running(*names: str, tls: tuple[str, str] | None = None) -> Iterator[dict[str, str]]:
    """One process serving each named stand-in service on its own free port; name → base URL. `tls`: a
    (certificate, key) pair: HTTPS only, the URLs are https://127.0.0.1:PORT."""
    ports = {name: _free_port() for name in names or ("echo",)}
    argv = [sys.executable, "-m", "sample_backend", *(f"{n}={p}" for n, p in ports.items())]
    if tls:
        argv += ["--tls-cert", str(tls[0]), "--tls-key", str(tls[1])]
    base = "https://127.0.0.1" if tls else "http://127.0.0.1"
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for port in ports.values():
            _wait(port, proc)
        yield {name: f"{base}:{port}" for name, port in ports.items()}
    finally:
        proc.terminate()
        proc.wait(10)
