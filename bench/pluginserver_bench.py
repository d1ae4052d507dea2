"""`python -m bench.pluginserver_bench`: the plugin server's own cost per PDK round trip, written to
docs/benchmarks-pluginserver.md with its command.

kong_pluginserver and kong-pdk 0.36's server run the same trivial plugin (tests/emulator/plugins/t_script.py: two PDK
calls per event, so three round trips: HandleEvent + 2 Steps), driven by kong-pluginserver/tests/kong_driver.py
(the Kong-side driver written from Kong 3.9.1's mp_rpc.lua) from this process, in interleaved rounds. Per server:
server CPU (utime+stime from /proc) per round trip, wall time per event, and RSS after a warm-up vs after the run.
No Redis, no ports: Unix sockets in a temp dir only, so it runs anywhere.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "kong-pluginserver" / "tests"))

from kong_driver import Request, Worker  # noqa: E402

SCRIPT = REPO / "tests" / "emulator" / "plugins" / "t_script.py"
SERVERS = {"kong_pluginserver": ["-m", "kong_pluginserver"], "kong-pdk 0.36": []}
CONF = {"access": json.dumps([["kong.request.get_header", ["x"]], ["kong.ctx.shared.set", ["k", "v"]]]),
        "report": False}  # fmt: skip
TRIPS_PER_EVENT = 3


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def start(name: str, launcher: list[str], tmp: Path) -> tuple[subprocess.Popen, str]:
    prefix = tmp / name.split()[0]
    prefix.mkdir()
    sock = str(prefix / "t.sock")
    proc = subprocess.Popen(
        [sys.executable, *launcher, str(SCRIPT), "-p", str(prefix), "--socket-name", "t.sock", "--no-lua-style"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while not os.path.exists(sock):
        if time.monotonic() > deadline:
            raise SystemExit(f"{name} did not start")
        time.sleep(0.05)
    time.sleep(0.2)
    return proc, sock


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", "--events", type=int, default=60_000, help="events per server (3 round trips each)")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("-o", "--output", default=str(REPO / "docs" / "benchmarks-pluginserver.md"))
    args = parser.parse_args()
    load = os.getloadavg()[0]
    tmp = Path(tempfile.mkdtemp(prefix="svpb", dir="/tmp"))
    procs = {name: start(name, launcher, tmp) for name, launcher in SERVERS.items()}
    workers = {name: [Worker(sock, "t-script"), Worker(sock, "t-script")] for name, (_, sock) in procs.items()}
    plugin_id = str(uuid.uuid4())
    totals = {name: [0.0, 0.0] for name in procs}
    rss = {}
    try:
        for name, ws in workers.items():
            for i in range(2000):
                ws[i % 2].handle_event(plugin_id, CONF, "access", Request())
            rss[name] = [rss_kib(procs[name][0].pid)]
        per_round = args.events // args.rounds
        for _ in range(args.rounds):
            for name, ws in workers.items():
                pid = procs[name][0].pid
                c0, t0 = cpu_s(pid), time.perf_counter()
                for i in range(per_round):
                    ws[i % 2].handle_event(plugin_id, CONF, "access", Request())
                totals[name][0] += cpu_s(pid) - c0
                totals[name][1] += time.perf_counter() - t0
        for name in procs:
            rss[name].append(rss_kib(procs[name][0].pid))
        errors = {name: [e for w in ws for e in w.log] for name, ws in workers.items()}
    finally:
        for proc, _ in procs.values():
            proc.terminate()
            proc.wait(20)
        shutil.rmtree(tmp, ignore_errors=True)
    events = per_round * args.rounds
    rows = ["| server | server CPU µs per round trip | wall µs per event (3 round trips) | RSS KiB after warm-up → end "
            "| RSS growth | errors |", "|---|---|---|---|---|---|"]  # fmt: skip
    for name, (cpu, wall) in totals.items():
        r0, r1 = rss[name]
        rows.append(
            f"| {name} | **{cpu / (events * TRIPS_PER_EVENT) * 1e6:.0f}** | {wall / events * 1e6:.0f} "
            f"| {r0:,} → {r1:,} | {(r1 - r0) / r0 * 100:+.2f} % | {len(errors[name])} |"
        )
    text = "\n".join(
        [
            "# Benchmarks: the plugin server's own cost per PDK round trip",
            "",
            f"Command: `python -m bench.pluginserver_bench -n {args.events} --rounds {args.rounds}`  ",
            f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
            f"{time.strftime('%Y-%m-%d %H:%M')}, load average before the run {load:.1f} (shared machine).  ",
            f"{events:,} events per server ({events * TRIPS_PER_EVENT:,} round trips), two emulated nginx workers "
            "(kong-pluginserver/tests/kong_driver.py: Kong 3.9.1's mp_rpc.lua exchange, pooled connections), "
            f"{args.rounds} interleaved rounds; the plugin (t-script) makes two PDK calls and does nothing else, so "
            "the CPU is the server's: unpacking, dispatch, the event's switches, packing. Target: ≤ 40 µs.",
            "",
            *rows,
            "",
        ]
    )
    Path(args.output).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
