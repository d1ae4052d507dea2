"""`make bench`: measured side by side in one run, written to docs/benchmarks.md with the command.

Emulator cost per request: the sample backend direct, then through the emulator with no plugin, then with one
plugin making k = 1, 3, 6 PDK calls. Every case runs the same closed-loop load (C concurrent clients, N requests).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "kong-emulator" / "src"))

from kong_emulator.config.localenv import env_key  # noqa: E402
from kong_emulator.testing import wait_port  # noqa: E402

BACKEND_PORT = 9191
PROXY_PORT = 9190


@dataclass
class Result:
    name: str
    requests: int
    seconds: float
    latencies_ms: list[float]
    errors: int
    emulator_cpu_us: float | None = None  # emulator process CPU per request
    plugin_cpu_us: float | None = None  # plugin-server processes' CPU per request

    round_trips: int = 0  # HandleEvent + one Step per PDK call (plus StartInstance once, in warm-up)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    def pct(self, p: float) -> float:
        data = sorted(self.latencies_ms)
        return data[min(len(data) - 1, int(p / 100 * len(data)))]


async def drive(url: str, total: int, concurrency: int) -> tuple[float, list[float], int]:
    latencies: list[float] = []
    errors = 0
    counter = iter(range(total))
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            nonlocal errors
            for _ in counter:
                t = time.perf_counter()
                async with session.get(url) as resp:
                    await resp.read()
                    if resp.status != 200:
                        errors += 1
                latencies.append((time.perf_counter() - t) * 1000)

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - start, latencies, errors


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process, from /proc (clock ticks)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        out.extend(int(c) for c in text)
    return out


def write_configs(tmp: Path, k: int | None) -> tuple[Path, Path]:
    conf = tmp / "kong.conf"
    yml = tmp / "kong.yml"
    plugin = REPO / "bench" / "plugins" / "bench-calls.py"
    lines = [
        f"prefix = {tmp}/",
        f"declarative_config = {yml}",
        f"proxy_listen = 127.0.0.1:{PROXY_PORT}",
        "plugins = bundled,bench-calls",
        "pluginserver_names = bench-calls",
        f"pluginserver_bench_calls_socket = {tmp}/bench-calls.sock",
        f"pluginserver_bench_calls_start_cmd = {sys.executable} {plugin} -p {tmp}/",
        f"pluginserver_bench_calls_query_cmd = {sys.executable} {plugin} --dump",
    ]
    conf.write_text("\n".join(lines) + "\n")
    plugins = "" if k is None else f"plugins:\n  - name: bench-calls\n    config: {{calls: {k}}}\n"
    yml.write_text(
        '_format_version: "3.0"\nservices:\n  - name: backend\n'
        f"    url: http://127.0.0.1:{BACKEND_PORT}\n"
        '    routes:\n      - name: all\n        paths: ["/"]\n' + plugins
    )
    return conf, yml


def run_case(name: str, k: int | None, total: int, concurrency: int) -> Result:
    with tempfile.TemporaryDirectory(dir="/tmp", prefix="svb") as d:
        conf, _ = write_configs(Path(d), k)
        env = {key: val for key, val in os.environ.items() if not key.startswith("KONG_")}
        env[env_key("log_level")] = "warn"
        proc = subprocess.Popen([sys.executable, "-m", "kong_emulator", "-c", str(conf)], env=env)
        try:
            wait_port(PROXY_PORT)
            url = f"http://127.0.0.1:{PROXY_PORT}/__echo"
            asyncio.run(drive(url, min(200, total), concurrency))  # warm-up: instances, pools
            kids = children(proc.pid)
            before = cpu_seconds(proc.pid), sum(cpu_seconds(k) for k in kids)
            seconds, lat, errors = asyncio.run(drive(url, total, concurrency))
            after = cpu_seconds(proc.pid), sum(cpu_seconds(k) for k in kids)
        finally:
            proc.terminate()
            proc.wait(10)
    emu_us = (after[0] - before[0]) / total * 1e6
    plugin_us = (after[1] - before[1]) / total * 1e6 if kids else None
    return Result(name, total, seconds, lat, errors, emu_us, plugin_us, 0 if k is None else k + 1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", "--requests", type=int, default=3000)
    parser.add_argument("-c", "--concurrency", type=int, default=8)
    parser.add_argument("-o", "--output", default=str(REPO / "docs" / "benchmarks.md"))
    args = parser.parse_args()
    backend = subprocess.Popen([sys.executable, "-m", "sample_backend", f"bench={BACKEND_PORT}"])
    try:
        wait_port(BACKEND_PORT)
        url = f"http://127.0.0.1:{BACKEND_PORT}/__echo"
        asyncio.run(drive(url, 200, args.concurrency))
        seconds, lat, errors = asyncio.run(drive(url, args.requests, args.concurrency))
        results = [Result("backend direct (no emulator)", args.requests, seconds, lat, errors)]
        results.append(run_case("emulator, no plugin", None, args.requests, args.concurrency))
        for k in (1, 3, 6):
            results.append(run_case(f"emulator, 1 plugin, k={k} PDK calls", k, args.requests, args.concurrency))
    finally:
        backend.terminate()
        backend.wait(10)
    report(results, args)


def report(results: list[Result], args) -> None:
    rows = [
        "| case | PDK round trips | req/s | p50 ms | p99 ms | emulator CPU µs/req | plugin server CPU µs/req "
        "| errors |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        trips = "n/a" if r.plugin_cpu_us is None else str(r.round_trips)
        emu = "n/a" if r.emulator_cpu_us is None else f"{r.emulator_cpu_us:,.0f}"
        plug = "n/a" if r.plugin_cpu_us is None else f"{r.plugin_cpu_us:,.0f}"
        rows.append(
            f"| {r.name} | {trips} | {r.rps:,.0f} | {r.pct(50):.2f} | {r.pct(99):.2f} | {emu} | {plug} | {r.errors} |"
        )
    command = f"make bench  (python -m bench -n {args.requests} -c {args.concurrency})"
    text = "\n".join(
        [
            "# Benchmarks",
            "",
            "Numbers from one run, every case side by side on the same machine; compare ratios, not absolutes.",
            "",
            "## Kong emulator: cost per request",
            "",
            f"Command: `{command}`  ",
            f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
            f"{time.strftime('%Y-%m-%d')}  ",
            f"Load: {args.concurrency} concurrent keep-alive clients, {args.requests} GET requests per case, "
            "load generator on the same cores. CPU is utime+stime from /proc over the measured run, per request.",
            "",
            *rows,
            "",
            "The other benchmarks, each written by its own command in the same `make bench`:",
            "[sv-jwt](benchmarks-jwt.md) (cold vs cached verification, the naive yardstick, RSS), "
            "[sv-quota](benchmarks-quota.md) (decisions/s next to redis-benchmark, round trips), "
            "[auth service](benchmarks-auth.md) (/login and /refresh next to hello-world Flask).",
            "",
        ]
    )
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
