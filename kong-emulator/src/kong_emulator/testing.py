"""Run the emulator as a real process for tests and benchmarks: write a kong.conf + kong.yml, start, wait, stop.

`EmulatorProcess.strict_failures()` returns the loud lines strict mode writes, so a test fixture can fail the test
that caused a plugin-side error even when the HTTP answer looked fine.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

STRICT_MARK = "STRICT MODE"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, seconds: float = 90.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {seconds}s")


@dataclass
class PluginEntry:
    """A plugin server entry file (a dedicated server: `python FILE --dump` / `python FILE -p PREFIX`)."""

    name: str
    path: Path
    flags: str = "--no-lua-style"


def conf_text(prefix: Path, yml: Path, port: int, plugins: list[PluginEntry], strict: bool, extra: dict) -> str:
    names = ",".join(p.name for p in plugins)
    lines = [
        f"prefix = {prefix}/",
        f"declarative_config = {yml}",
        f"proxy_listen = 127.0.0.1:{port}",
        f"plugins = bundled{',' + names if names else ''}",
        "log_level = info",
        f"emulator_strict = {'on' if strict else 'off'}",
    ]
    if plugins:
        lines.append(f"pluginserver_names = {names}")
    for p in plugins:
        key = "pluginserver_" + p.name.replace("-", "_")
        lines += [
            f"{key}_socket = {prefix}/{p.name}.sock",
            f"{key}_start_cmd = {sys.executable} {p.path} {p.flags} -p {prefix}/",
            f"{key}_query_cmd = {sys.executable} {p.path} --dump",
        ]
    lines += [f"{k} = {v}" for k, v in extra.items()]
    return "\n".join(lines) + "\n"


@dataclass
class EmulatorProcess:
    """`with EmulatorProcess(yml_text, plugins) as gw: requests.get(gw.url + "/x")`."""

    kong_yml: str
    plugins: list[PluginEntry] = field(default_factory=list)
    strict: bool = True
    conf_extra: dict = field(default_factory=dict)
    env: dict = field(default_factory=dict)
    port: int = 0
    proc: subprocess.Popen | None = None
    workdir: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "emulator.log"

    def start(self, wait: bool = True) -> EmulatorProcess:
        self.workdir = Path(tempfile.mkdtemp(prefix="sve", dir="/tmp"))
        self.port = self.port or free_port()
        yml = self.workdir / "kong.yml"
        yml.write_text(self.kong_yml)
        conf = self.workdir / "kong.conf"
        conf.write_text(conf_text(self.workdir, yml, self.port, self.plugins, self.strict, self.conf_extra))
        env = {k: v for k, v in os.environ.items() if not k.startswith("KONG_")}
        env.update(self.env)
        with open(self.log_path, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "kong_emulator", "-c", str(conf)], env=env, stdout=out, stderr=out
            )
        if wait:
            wait_port(self.port, proc=self.proc)
        return self

    def wait_exit(self, seconds: float = 20.0) -> int:
        return self.proc.wait(seconds)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.workdir else ""

    def strict_failures(self) -> list[str]:
        return [line for line in self.output().splitlines() if STRICT_MARK in line]

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> EmulatorProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
