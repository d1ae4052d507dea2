"""`python -m bench.emulator_bench`: the emulator's own CPU per request, this tree next to a base revision in one run,
written to docs/benchmarks-emulator.md with its command.

The workload stands in for the StoryVerse chain's emulator side: one route to the sample backend with a plugin
server making 8 PDK calls in access (the chain's 8 round trips, bench/plugins/bench-calls.py) and a post-function
access chunk reading two headers (the Lua guard's shape). Both emulators run the same config and the same closed-loop
load (C keep-alive clients, N GET requests, after a warm-up); CPU is the emulator process's utime+stime from /proc
over the measured run. The base revision's emulator is `git archive`d to a temp dir and run from there.

``--profile`` instead runs this tree's emulator under cProfile for the same load and prints the top functions.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import pstats
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "kong-emulator" / "src"))

from kong_emulator.testing import free_port, wait_port  # noqa: E402

from bench.__main__ import children, cpu_seconds, drive  # noqa: E402

PDK_CALLS = 8
GUARD = "local a = kong.request.get_header('x-a')\\nlocal b = kong.request.get_header('x-b')"
BASE = "1b6afe8"  # the emulator before issue 14 (the figures' "today")


def write_configs(tmp: Path, proxy_port: int, backend_port: int) -> Path:
    plugin = REPO / "bench" / "plugins" / "bench-calls.py"
    conf = tmp / "kong.conf"
    conf.write_text(
        "\n".join(
            [
                f"prefix = {tmp}/",
                f"declarative_config = {tmp}/kong.yml",
                f"proxy_listen = 127.0.0.1:{proxy_port}",
                "plugins = bundled,bench-calls",
                "pluginserver_names = bench-calls",
                f"pluginserver_bench_calls_socket = {tmp}/bench-calls.sock",
                f"pluginserver_bench_calls_start_cmd = {sys.executable} {plugin} -p {tmp}/",
                f"pluginserver_bench_calls_query_cmd = {sys.executable} {plugin} --dump",
                "log_level = warn",
            ]
        )
        + "\n"
    )
    (tmp / "kong.yml").write_text(
        '_format_version: "3.0"\nservices:\n  - name: backend\n'
        f"    url: http://127.0.0.1:{backend_port}\n"
        '    routes:\n      - name: all\n        paths: ["/"]\n'
        f"        plugins:\n          - name: bench-calls\n            config: {{calls: {PDK_CALLS}}}\n"
        f'          - name: post-function\n            config: {{access: ["{GUARD}"]}}\n'
    )
    return conf


def base_tree(rev: str, into: Path) -> Path:
    """The base revision's kong-emulator/src, extracted with git archive."""
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", rev, "kong-emulator/src"], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into / "kong-emulator" / "src"


def run_case(src: Path | None, backend_port: int, total: int, concurrency: int, profile: Path | None = None) -> float:
    """Emulator CPU µs per request (src None = this tree)."""
    with tempfile.TemporaryDirectory(dir="/tmp", prefix="sveb") as d:
        port = free_port()
        conf = write_configs(Path(d), port, backend_port)
        env = {k: v for k, v in os.environ.items() if not k.startswith("KONG_")}
        if src is not None:
            env["PYTHONPATH"] = str(src)
        argv = [sys.executable, "-m", "kong_emulator", "-c", str(conf)]
        if profile is not None:  # CPU time, not wall time: waiting for a plugin server is not the emulator's cost
            code = (
                "import cProfile, time\nfrom kong_emulator.app import main\n"
                "prof = cProfile.Profile(time.process_time)\n"
                f"try:\n    prof.runcall(main, ['-c', {str(conf)!r}])\n"
                f"finally:\n    prof.dump_stats({str(profile)!r})\n"
            )
            argv = [sys.executable, "-c", code]
        proc = subprocess.Popen(argv, env=env)
        try:
            wait_port(port, 60, proc)
            url = f"http://127.0.0.1:{port}/__echo"
            _, _, errors = asyncio.run(drive(url, 300, concurrency))  # warm-up: instances, pools, Lua
            assert errors == 0, "warm-up requests failed"
            children(proc.pid)
            before = cpu_seconds(proc.pid)
            _, _, errors = asyncio.run(drive(url, total, concurrency))
            after = cpu_seconds(proc.pid)
            assert errors == 0, f"{errors} requests failed"
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
    return (after - before) / total * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", "--requests", type=int, default=3000)
    parser.add_argument("-c", "--concurrency", type=int, default=8)
    parser.add_argument("-r", "--rounds", type=int, default=3, help="alternating rounds per emulator (best kept)")
    parser.add_argument("--base", default=BASE, help="git revision to compare with")
    parser.add_argument("--profile", action="store_true", help="cProfile this tree's emulator instead")
    parser.add_argument("-o", "--output", default=str(REPO / "docs" / "benchmarks-emulator.md"))
    args = parser.parse_args()
    backend_port = free_port()
    backend = subprocess.Popen([sys.executable, "-m", "sample_backend", f"bench={backend_port}"])
    try:
        wait_port(backend_port)
        if args.profile:
            with tempfile.TemporaryDirectory() as d:
                out = Path(d) / "emulator.prof"
                run_case(None, backend_port, args.requests, args.concurrency, profile=out)
                stats = pstats.Stats(str(out))
                stats.sort_stats("tottime").print_stats(30)
                stats.sort_stats("cumtime").print_stats("kong_emulator", 40)
            return
        load = [os.getloadavg()[0]]
        with tempfile.TemporaryDirectory() as d:
            base_src = base_tree(args.base, Path(d))
            base, ours = [], []
            for _ in range(args.rounds):  # alternate, so both see the same machine load
                base.append(run_case(base_src, backend_port, args.requests, args.concurrency))
                ours.append(run_case(None, backend_port, args.requests, args.concurrency))
                load.append(os.getloadavg()[0])
    finally:
        backend.terminate()
        backend.wait(10)
    report(min(base), min(ours), base, ours, args, load)


def report(base: float, ours: float, base_all: list[float], ours_all: list[float], args, load: list[float]) -> None:
    command = (
        f"python -m bench.emulator_bench -n {args.requests} -c {args.concurrency} -r {args.rounds} --base {args.base}"
    )
    text = "\n".join(
        [
            "# Benchmarks: the emulator's own CPU per request",
            "",
            f"Command: `{command}`  ",
            f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
            f"{time.strftime('%Y-%m-%d')}  ",
            f"Workload: one route, a plugin server making {PDK_CALLS} PDK calls in access, a post-function access "
            f"chunk; {args.concurrency} keep-alive clients, {args.requests} GET requests per run, {args.rounds} "
            "alternating runs per emulator (best kept: the machine is shared). CPU is the emulator process's "
            "utime+stime from /proc over the measured run.",
            "",
            "| emulator | CPU µs/req (best) | all runs |",
            "|---|---|---|",
            f"| base {args.base} (before issue 14) | {base:,.0f} | {', '.join(f'{x:,.0f}' for x in base_all)} |",
            f"| this tree | {ours:,.0f} | {', '.join(f'{x:,.0f}' for x in ours_all)} |",
            "",
            f"Ratio this tree / base: **{ours / base:.2f}** (best / best); per round "
            f"{', '.join(f'{o / b:.2f}' for o, b in zip(ours_all, base_all, strict=True))}. "
            f"Machine load (1-minute load average, at the start and after each round): "
            f"{', '.join(f'{x:.1f}' for x in load)} on {os.cpu_count()} cores.",
            "",
        ]
    )
    Path(args.output).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
