"""`python -m bench.chain_bench`: the whole chain sv-jwt + sv-rbac + sv-quota on the happy path, written to
docs/benchmarks-chain.md with its command.

Measured side by side in one run, through the emulator (Kong's real plugin-server protocol, one dedicated server
per plugin), with the same closed-loop load:

1. the StoryVerse chain on kong_pluginserver (the entry files as deployed, ``--no-lua-style``: the default);
2. the same chain, same entry files and plugin classes, on kong-pdk 0.36's server (the fallback,
   ``SV_PLUGIN_SERVER=kong-pdk`` in the plugin servers' environment);
3. the naïve chain (bench/plugins/naive-jwt.py, naive-rbac.py, naive-quota.py) on kong-pdk's server: one PDK call
   per header, PyJWT RS256 on every request, one Redis EVAL per period, three plugins.

Per case: PDK round trips per request (every RPC the plugin servers answer: HandleEvent + one Step per PDK call,
counted by a MessagePack-parsing Unix-socket proxy in a separate short run, so counting costs nothing in the timed
runs), plugin-server CPU per request (utime+stime of the three plugin-server processes from /proc over the measured
window), emulator CPU per request, req/s, p50/p99. Then each plugin server's RSS after a warm-up and after a
long run, for cases 1 and 2. Tokens are RS256 from a local JWKS; Redis is a redis-server of our own on a free port
(every plugin, naive-jwt's denylist included, uses it), so the bench can run outside nstest: it binds only free
ports and touches no shared server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import selectors
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import msgpack

REPO = Path(__file__).resolve().parent.parent
for sub in ("kong-plugins/src", "kong-emulator/src"):
    sys.path.insert(0, str(REPO / sub))

from kong_emulator.testing import EmulatorProcess, PluginEntry, free_port, wait_port  # noqa: E402

from bench.jwt_bench import AUDIENCE, ISSUER, Issuer, cpu_seconds, rss_kib  # noqa: E402
from bench.quota_bench import start_redis  # noqa: E402

PLUGINS = REPO / "kong-plugins" / "plugins"
BENCH_PLUGINS = REPO / "bench" / "plugins"
HUGE = 10**9


# -- the chains ------------------------------------------------------------------------------------------------


def sv_chain(jwks_url: str, redis_port: int) -> list[tuple[str, Path, dict]]:
    return [
        ("sv-jwt", PLUGINS / "sv-jwt.py",
         {"jwks_url": jwks_url, "issuer": ISSUER, "audience": AUDIENCE, "redis_port": redis_port,
          "headers_in_guard": True}),
        ("sv-rbac", PLUGINS / "sv-rbac.py", {"rules": [{"methods": ["GET"], "roles": ["parent", "child"]}]}),
        ("sv-quota", PLUGINS / "sv-quota.py",
         {"policies": [{"name": "list-minute", "limit": HUGE, "period": "minute", "by": "user"}],
          "redis_port": redis_port}),
    ]  # fmt: skip


def naive_chain(jwks_url: str, redis_port: int) -> list[tuple[str, Path, dict]]:
    return [
        ("naive-jwt", BENCH_PLUGINS / "naive-jwt.py",
         {"jwks_url": jwks_url, "issuer": ISSUER, "audience": AUDIENCE, "redis_database": 12,
          "redis_port": redis_port}),
        ("naive-rbac", BENCH_PLUGINS / "naive-rbac.py", {"roles": ["parent", "child"], "methods": ["GET"]}),
        ("naive-quota", BENCH_PLUGINS / "naive-quota.py",
         {"periods": {"minute": HUGE, "hour": HUGE}, "redis_port": redis_port}),
    ]  # fmt: skip


GUARD = REPO / "kong-plugins" / "guard" / "fail_closed_guard.lua"


def kong_yml(backend_url: str, chain: list[tuple[str, Path, dict]]) -> str:
    """One GET route like v1-stories-list: the three plugins on it, the sample backend's echo upstream; the StoryVerse
    chain also gets kong.yml's fail-closed guard (Kong-native Lua: no round trip), which sets sv-jwt's headers."""
    plugins = [{"name": n, "config": c} for n, _, c in chain]
    if any(n == "sv-jwt" for n, _, _ in chain):
        plugins.append({"name": "post-function", "config": {"access": [GUARD.read_text()]}})
    plugins = json.dumps(plugins)
    return (
        '_format_version: "3.0"\nservices:\n  - name: stories\n'
        f"    url: {backend_url}/__echo\n"
        "    routes:\n      - name: v1-stories-list\n        methods: [GET]\n"
        '        paths: ["/api/v1/stories"]\n'
        f"        plugins: {plugins}\n"
    )


# -- round-trip counting proxy ---------------------------------------------------------------------------------


class CountingProxy:
    """Listens where the emulator connects, forwards to the real server socket, counts the RPC methods it sees."""

    def __init__(self, listen: str, upstream: str) -> None:
        self.listen, self.upstream = listen, upstream
        self.counts: dict[str, int] = {}
        self.sel = selectors.DefaultSelector()
        self.stop = False
        self.lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.lsock.bind(listen)
        self.lsock.listen(256)
        self.sel.register(self.lsock, selectors.EVENT_READ, None)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop:
            for key, _ in self.sel.select(0.2):
                if key.data is None:
                    client, _ = self.lsock.accept()
                    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                    try:
                        server.connect(self.upstream)
                    except OSError:
                        client.close()  # the real server is not up yet: the emulator retries
                        continue
                    unpacker = msgpack.Unpacker(raw=False, strict_map_key=False)
                    self.sel.register(client, selectors.EVENT_READ, (server, unpacker))
                    self.sel.register(server, selectors.EVENT_READ, (client, None))
                    continue
                peer, unpacker = key.data
                try:
                    data = key.fileobj.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    for s in (key.fileobj, peer):
                        try:
                            self.sel.unregister(s)
                        except (KeyError, ValueError):
                            pass
                        s.close()
                    continue
                if unpacker is not None:
                    unpacker.feed(data)
                    for msg in unpacker:
                        method = msg[2] if isinstance(msg, list) and len(msg) > 2 else "?"
                        self.counts[method] = self.counts.get(method, 0) + 1
                peer.sendall(data)

    def close(self) -> None:
        self.stop = True
        self.thread.join(2)


# -- load ------------------------------------------------------------------------------------------------------


async def drive(url: str, tokens: list[str], total: int, concurrency: int, statuses: dict) -> tuple[float, list]:
    latencies: list[float] = []
    counter = iter(range(total))
    headers = [{"Authorization": f"Bearer {t}", "X-User-Id": "spoofed", "X-Sv-Debug": "1"} for t in tokens]
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:

        async def worker() -> None:
            for i in counter:
                t = time.perf_counter()
                async with session.get(url, headers=headers[i % len(headers)]) as resp:
                    await resp.read()
                    if resp.status != 200:
                        statuses[resp.status] = statuses.get(resp.status, 0) + 1
                latencies.append((time.perf_counter() - t) * 1000)

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - start, latencies


def server_pids(gw: EmulatorProcess, chain) -> dict[str, int]:
    pids = {}
    for task in Path(f"/proc/{gw.proc.pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            cmd = Path(f"/proc/{child}/cmdline").read_text().replace("\0", " ")
            for name, entry, _ in chain:
                if str(entry) in cmd and "--dump" not in cmd:
                    pids[name] = int(child)
    missing = {n for n, _, _ in chain} - set(pids)
    if missing:
        raise RuntimeError(f"no plugin server for {missing}")
    return pids


@dataclass
class Case:
    name: str
    chain: list
    env: dict = field(default_factory=dict)  # the plugin servers' environment (SV_PLUGIN_SERVER)
    requests: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    statuses: dict = field(default_factory=dict)
    cpu_us: dict[str, float] = field(default_factory=dict)  # per plugin server
    emulator_cpu_us: float = 0.0
    trips: dict[str, float] = field(default_factory=dict)  # per plugin: RPCs per request
    rss: dict[str, list[tuple[int, int]]] = field(default_factory=dict)

    @property
    def plugin_cpu_us(self) -> float:
        return sum(self.cpu_us.values())

    @property
    def round_trips(self) -> float:
        return sum(self.trips.values())

    def pct(self, p: float) -> float:
        data = sorted(self.latencies)
        return data[min(len(data) - 1, int(p / 100 * len(data)))]


def gateway(backend_url: str, case: Case, flags: str = "--no-lua-style") -> EmulatorProcess:
    entries = [PluginEntry(n, p, flags) for n, p, _ in case.chain]
    return EmulatorProcess(
        kong_yml(backend_url, case.chain), entries, strict=False, conf_extra={"log_level": "warn"}, env=case.env
    )


def measure(case: Case, backend_url: str, tokens, total: int, concurrency: int) -> None:
    gw = gateway(backend_url, case).start()
    url = gw.url + "/api/v1/stories"
    try:
        asyncio.run(drive(url, tokens, max(500, 2 * len(tokens)), concurrency, {}))  # warm-up
        pids = server_pids(gw, case.chain)
        before = {n: cpu_seconds(p) for n, p in pids.items()}, cpu_seconds(gw.proc.pid)
        case.seconds, case.latencies = asyncio.run(drive(url, tokens, total, concurrency, case.statuses))
        after = {n: cpu_seconds(p) for n, p in pids.items()}, cpu_seconds(gw.proc.pid)
    finally:
        gw.stop()
    case.requests = total
    case.cpu_us = {n: (after[0][n] - before[0][n]) / total * 1e6 for n in pids}
    case.emulator_cpu_us = (after[1] - before[1]) / total * 1e6


def count_trips(case: Case, backend_url: str, tokens, total: int, concurrency: int) -> None:
    """RPCs per request per plugin, warm (StartInstance excluded): through counting proxies, in their own run."""
    flags = "--no-lua-style --socket-name {name}-real.sock"
    entries = [PluginEntry(n, p, flags.format(name=n)) for n, p, _ in case.chain]
    gw = EmulatorProcess(
        kong_yml(backend_url, case.chain), entries, strict=False, conf_extra={"log_level": "warn"}, env=case.env
    )
    gw.start(wait=False)
    proxies = {n: CountingProxy(str(gw.workdir / f"{n}.sock"), str(gw.workdir / f"{n}-real.sock")) for n in
               [e.name for e in entries]}  # fmt: skip
    url = gw.url + "/api/v1/stories"
    try:
        wait_port(gw.port, 60, proc=gw.proc)
        for p in proxies.values():  # the proxies listen at once; wait for the real servers behind them
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
                    if probe.connect_ex(p.upstream) == 0:
                        break
                time.sleep(0.05)
        asyncio.run(drive(url, tokens, 50, concurrency, {}))
        for p in proxies.values():
            p.counts.clear()
        asyncio.run(drive(url, tokens, total, concurrency, {}))
        time.sleep(0.3)  # the log phase runs after the response
    finally:
        gw.stop()
        for p in proxies.values():
            p.close()
    for name, p in proxies.items():
        rpcs = sum(v for k, v in p.counts.items() if k == "plugin.HandleEvent" or k.startswith("plugin.Step"))
        case.trips[name] = rpcs / total


def rss_run(case: Case, backend_url: str, tokens, seconds: float, concurrency: int) -> None:
    """Each plugin server's RSS after a 2,000-request warm-up, then 5 times over a run of about ``seconds``."""
    gw = gateway(backend_url, case).start()
    url = gw.url + "/api/v1/stories"
    try:
        warm = 2000
        asyncio.run(drive(url, tokens, warm, concurrency, {}))
        pids = server_pids(gw, case.chain)
        case.rss = {n: [(warm, rss_kib(p))] for n, p in pids.items()}
        t0 = time.perf_counter()
        asyncio.run(drive(url, tokens, 1000, concurrency, {}))
        step = max(1000, int(1000 * seconds / 5 / (time.perf_counter() - t0)))
        served = warm + 1000
        for _ in range(5):
            asyncio.run(drive(url, tokens, step, concurrency, case.statuses))
            served += step
            for n, p in pids.items():
                case.rss[n].append((served, rss_kib(p)))
    finally:
        gw.stop()


# -- report ----------------------------------------------------------------------------------------------------


def report(args, cases: list[Case], rss_cases: list[Case], elapsed: float, jwks_fetches: int) -> str:
    naive, base = cases[-1], cases[0]
    command = (
        f"python -m bench.chain_bench -n {args.requests} -c {args.concurrency} --tokens {args.tokens} "
        f"--rss-seconds {args.rss_seconds:g}"
    )
    rows = [
        "| case | PDK round trips / request | plugin-server CPU µs/req (jwt + rbac + quota) | vs naïve | vs kong-pdk "
        "| emulator CPU µs/req | req/s | p50 ms | p99 ms | non-200 |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in cases:
        parts = " + ".join(f"{v:,.0f}" for v in c.cpu_us.values())
        rows.append(
            f"| {c.name} | {c.round_trips:.2f} | **{c.plugin_cpu_us:,.0f}** ({parts}) "
            f"| {naive.plugin_cpu_us / c.plugin_cpu_us:.1f}× less | {base.plugin_cpu_us / c.plugin_cpu_us:.1f}× less "
            f"| {c.emulator_cpu_us:,.0f} | {c.requests / c.seconds:,.0f} | {c.pct(50):.2f} | {c.pct(99):.2f} "
            f"| {sum(c.statuses.values())} |"
        )
    trips = ["| case | " + " | ".join(f"plugin {i + 1}" for i in range(3)) + " | chain |", "|---|---|---|---|---|"]
    for c in cases:
        trips.append(
            f"| {c.name} | " + " | ".join(f"{n}: {v:.2f}" for n, v in c.trips.items()) + f" | {c.round_trips:.2f} |"
        )
    per_rt = [f"| {c.name} | {c.plugin_cpu_us / c.round_trips:,.0f} |" for c in cases if c.round_trips]
    rss_rows = ["| case | plugin server | RSS KiB after warm-up | RSS KiB at end | requests measured | growth |",
                "|---|---|---|---|---|---|"]  # fmt: skip
    for c in rss_cases:
        for name, samples in c.rss.items():
            (n0, k0), (n1, k1) = samples[0], samples[-1]
            rss_rows.append(f"| {c.name} | {name} | {k0:,} | {k1:,} | {n1 - n0:,} | {(k1 - k0) / k0 * 100:+.2f} % |")
    samples = "; ".join(
        f"{c.name} / {n}: " + ", ".join(f"{r:,}→{k:,}" for r, k in s) for c in rss_cases for n, s in c.rss.items()
    )
    statuses = {c.name: c.statuses for c in cases + rss_cases if c.statuses}
    return "\n".join(
        [
            "# Benchmarks: the whole chain (sv-jwt + sv-rbac + sv-quota)",
            "",
            "Numbers from one run, every case side by side on the same machine; compare ratios, not absolutes.",
            "",
            f"Command: `{command}` ({elapsed:.0f} s)  ",
            f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
            f"{time.strftime('%Y-%m-%d %H:%M')}, load average before the run {args.load:.1f} (other work shares these "
            "cores; the load generator, the emulator, Redis and the three plugin servers all run on them)  ",
            f"Load: {args.concurrency} concurrent keep-alive clients, {args.requests:,} GET /api/v1/stories per case "
            f"after a warm-up, each with a valid RS256 token ({args.tokens} distinct tokens cycled) plus spoofed "
            "`X-User-Id` / `X-Sv-Debug` headers. One route like `v1-stories-list`: sv-jwt, sv-rbac (GET: parent, "
            "child) and sv-quota (one by-user policy per minute, abuse detection on: the default) on a redis-server of "
            "its own, as the generated kong.yml configures them: sv-jwt with `headers_in_guard` (the identity headers "
            "are set by kong.yml's fail-closed guard, a Kong-native post-function: no round trip), sv-quota in access "
            "only (its log phase, sv-quota-log, runs on daily-quota and login routes only).",
            "",
            "Targets (DESIGN §9): ≤ 8 PDK round trips per request; plugin-server CPU per request ≥ 5× below the naïve "
            "chain; moonshot ≤ 300 µs; RSS grows ≤ 5 % over 100k requests.",
            "",
            "## Per request",
            "",
            "Plugin-server CPU is utime+stime of the three plugin-server processes from /proc over the measured "
            "window ÷ requests (per server in brackets). Both StoryVerse cases run the same entry files and plugin "
            "classes; kong_pluginserver (the default: a greenlet per event on gevent's hub, cooperative I/O) or "
            "kong-pdk 0.36's server (the fallback, `SV_PLUGIN_SERVER=kong-pdk`).",
            "",
            *rows,
            "",
            "## PDK round trips per request, per plugin",
            "",
            "Every RPC a plugin server answered (HandleEvent + one Step* per PDK call, access and log phases), counted "
            "by a MessagePack-parsing proxy on each plugin socket in a separate warm run of "
            f"{args.count_requests} requests (StartInstance excluded).",
            "",
            *trips,
            "",
            "Plugin-server CPU per round trip (µs): the price of the currency.",
            "",
            "| case | µs per round trip |",
            "|---|---|",
            *per_rt,
            "",
            "## Memory: plugin-server RSS",
            "",
            f"RSS of each plugin server after a 2,000-request warm-up and after a run sized to take about "
            f"{args.rss_seconds:g} s per case (N = as many requests as fit in that time at this load; not 100k).",
            "",
            *rss_rows,
            "",
            f"Samples (requests served → RSS KiB): {samples}.",
            "",
            f"Non-200 answers, by case and status: {statuses or 'none'}. JWKS fetches over the whole run: "
            f"{jwks_fetches} (one per sv-jwt / naive-jwt server start).",
            "",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", "--requests", type=int, default=3000)
    parser.add_argument("-c", "--concurrency", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--count-requests", type=int, default=300)
    parser.add_argument("--rss-seconds", type=float, default=90.0, help="length of each RSS run")
    parser.add_argument("-o", "--output", default=str(REPO / "docs" / "benchmarks-chain.md"))
    args = parser.parse_args()
    args.load = os.getloadavg()[0]
    started = time.monotonic()
    redis_proc, redis_port, _ = start_redis()
    issuer = Issuer()
    tokens = [issuer.token() for _ in range(args.tokens)]
    port = free_port()
    backend = subprocess.Popen(
        [sys.executable, "-m", "sample_backend", f"bench={port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_port(port, proc=backend)
        backend_url = f"http://127.0.0.1:{port}"
        sv = sv_chain(issuer.jwks_url, redis_port)
        cases = [
            Case("StoryVerse chain on kong_pluginserver", sv),
            Case("StoryVerse chain on kong-pdk 0.36's server", sv, {"SV_PLUGIN_SERVER": "kong-pdk"}),
            Case("naïve chain on kong-pdk 0.36's server", naive_chain(issuer.jwks_url, redis_port)),
        ]
        for case in cases:
            count_trips(case, backend_url, tokens, args.count_requests, args.concurrency)
            measure(case, backend_url, tokens, args.requests, args.concurrency)
            print(f"{case.name}: {case.round_trips:.2f} RT, {case.plugin_cpu_us:,.0f} µs {case.cpu_us}", flush=True)
        rss_cases = [Case(c.name, c.chain, c.env) for c in cases[:2]]
        for case in rss_cases:
            rss_run(case, backend_url, tokens, args.rss_seconds, args.concurrency)
            print(f"RSS {case.name}: {case.rss}", flush=True)
    finally:
        backend.terminate()
        backend.wait(10)
        redis_proc.terminate()
        redis_proc.wait(10)
        issuer.close()
    text = report(args, cases, rss_cases, time.monotonic() - started, issuer.fetches)
    Path(args.output).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
