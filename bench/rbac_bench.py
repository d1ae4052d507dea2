"""`python -m bench.rbac_bench`: sv-rbac's PDK round trips and plugin-server CPU per request, through the emulator,
side by side with the chain budget of docs/architecture.md §9 (sv-jwt + sv-rbac + sv-quota ≤ 9 round trips). Writes
docs/benchmarks-rbac.md with the command.

sv-rbac reads the identity sv-jwt puts in kong.ctx.shared, so every case runs sv-jwt then sv-rbac on one route, each
in its own plugin server (as kong.conf runs them); only the sv-rbac server's CPU and RPCs are counted. Round trips
are counted as bench/jwt_bench.py counts them (HandleEvent + one Step per PDK call, in a separate counting server
that is never used for CPU figures); sv-jwt is counted in the same run for the chain total.

Cases (route-scoped instances, configs shaped like the generated kong.yml):
  parent, GET /stories           rules [GET: parent, child]: the identity only
  child, POST /generate/{kind}   kind_capture: identity + the URI captures (child controls: hours, features)
  parent, GET /children/{id}     owned_captures child_id: identity + captures (family ownership)
  child refused, DELETE /stories/{id}   forbidden: identity + request id + response.exit

This file is also the counting plugin server's entry (`-p PREFIX` / `--dump` select that role, as the emulator
starts plugin servers); run it with `python -m bench.rbac_bench` for the benchmark.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PLUGINS = REPO / "kong-plugins" / "plugins"
BENCH_PLUGINS = REPO / "bench" / "plugins"
ME = Path(__file__).resolve()
STATUSES: dict[int, int] = {}


def counting_server() -> None:
    """Run sv-rbac in a kong-pdk dedicated server that counts its RPCs (bench/plugins/jwt_rpc_counter.py)."""
    sys.path.insert(0, str(BENCH_PLUGINS))
    import jwt_rpc_counter

    jwt_rpc_counter.ENTRIES["sv-rbac"] = PLUGINS / "sv-rbac.py"
    jwt_rpc_counter.run("sv-rbac")


if __name__ == "__main__" and ("--dump" in sys.argv or "-p" in sys.argv):
    counting_server()
    raise SystemExit(0)

import aiohttp  # noqa: E402
import jwt  # noqa: E402

sys.path.insert(0, str(REPO / "kong-emulator" / "src"))
sys.path.insert(0, str(REPO))

from kong_emulator.testing import EmulatorProcess, PluginEntry, free_port, wait_port  # noqa: E402

from bench.jwt_bench import AUDIENCE, ISSUER, KID, Issuer, cpu_seconds, plugin_server_pid  # noqa: E402
from bench.quota_bench import start_redis  # noqa: E402

REDIS_PORT = 0  # sv-jwt's denylist: a redis-server of the bench's own on a free port (set in main)
UUID_RE = "[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}"
CHILD_ID = str(uuid.uuid4())


@dataclass
class Case:
    name: str
    method: str
    path: str  # the request path
    route_path: str  # the route's regex path
    rbac: dict
    role: str
    expect: int
    requests: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    rbac_cpu_us: float = 0.0
    jwt_cpu_us: float = 0.0
    rbac_trips: float = 0.0
    jwt_trips: float = 0.0

    def pct(self, p: float) -> float:
        data = sorted(self.latencies)
        return data[min(len(data) - 1, int(p / 100 * len(data)))]


CASES = [
    Case("parent, GET /stories (rule only)", "GET", "/api/v1/stories", "~/api/v1/stories$",
         {"rules": [{"methods": ["GET"], "roles": ["parent", "child"]}]}, "parent", 200),
    Case("child, POST /generate/text (kind capture, hours, features)", "POST", "/api/v1/generate/text",
         "~/api/v1/generate/(?<kind>text|image|audio)$",
         {"rules": [{"methods": ["POST"], "roles": ["parent", "child"]}], "kind_capture": "kind"}, "child", 200),
    Case("parent, GET /auth/children/{id} (owned child_id)", "GET", f"/api/v1/auth/children/{CHILD_ID}",
         f"~/api/v1/auth/children/(?<child_id>{UUID_RE})$",
         {"rules": [{"methods": ["GET"], "roles": ["parent"]}],
          "owned_captures": [{"name": "child_id", "kind": "child"}]}, "parent", 200),
    Case("child refused, DELETE /stories/{id} (403 forbidden_role)", "DELETE", "/api/v1/stories/7",
         "~/api/v1/stories/(?<story_id>[0-9]+)$", {"rules": [{"methods": ["DELETE"], "roles": ["parent"]}]}, "child",
         403),
]  # fmt: skip


def token(issuer: Issuer, role: str) -> str:
    now = int(time.time())
    claims = {
        "iss": ISSUER, "aud": AUDIENCE, "sub": str(uuid.uuid4()), "iat": now, "nbf": now, "exp": now + 3600,
        "jti": str(uuid.uuid4()), "role": role, "family_id": str(uuid.uuid4()), "tier": "premium",
        "tz": "Europe/Paris", "sid": str(uuid.uuid4()), "client_id": "storyverse",
    }  # fmt: skip
    if role == "parent":
        claims["children"] = [CHILD_ID]
    else:
        claims.update(age_band="6-9", content_rating="TV-Y7", max_content_rating="TV-Y7", features=["text"],
                      allowed_hours="00:00-24:00", daily_story_limit=20)  # fmt: skip
    return jwt.encode(claims, issuer.key, algorithm="RS256", headers={"kid": KID, "typ": "at+jwt"})


def kong_yml(backend: str, case: Case, jwks_url: str) -> str:
    jwt_config = {"jwks_url": jwks_url, "issuer": ISSUER, "audience": AUDIENCE, "redis_port": REDIS_PORT}
    route = {
        "name": "bench-route",
        "paths": [case.route_path],
        "methods": [case.method],
        "strip_path": False,
        "plugins": [{"name": "sv-jwt", "config": jwt_config}, {"name": "sv-rbac", "config": case.rbac}],
    }
    service = {"name": "echo", "url": f"{backend}/__echo", "routes": [route]}
    return json.dumps({"_format_version": "3.0", "services": [service]})  # JSON is YAML


def start(backend: str, case: Case, jwks_url: str, rbac_entry: PluginEntry) -> EmulatorProcess:
    plugins = [PluginEntry("sv-jwt", PLUGINS / "sv-jwt.py"), rbac_entry]
    gw = EmulatorProcess(kong_yml(backend, case, jwks_url), plugins, strict=False)
    gw.conf_extra = {"log_level": "warn"}
    return gw.start()


async def drive(url: str, case: Case, tokens: list[str], total: int, concurrency: int):
    latencies: list[float] = []
    errors = 0
    counter = iter(range(total))
    headers = [{"Authorization": f"Bearer {t}"} for t in tokens]
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:

        async def worker() -> None:
            nonlocal errors
            for i in counter:
                t = time.perf_counter()
                async with session.request(case.method, url, headers=headers[i % len(headers)]) as resp:
                    await resp.read()
                    if resp.status != case.expect:
                        errors += 1
                        STATUSES[resp.status] = STATUSES.get(resp.status, 0) + 1
                latencies.append((time.perf_counter() - t) * 1000)

        begin = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - begin, latencies, errors


def measure(backend: str, case: Case, issuer: Issuer, tokens: list[str], total: int, concurrency: int) -> None:
    rbac = PluginEntry("sv-rbac", PLUGINS / "sv-rbac.py")
    gw = start(backend, case, issuer.jwks_url, rbac)
    try:
        url = gw.url + case.path
        asyncio.run(drive(url, case, tokens, max(500, 2 * len(tokens)), concurrency))  # warm-up
        pids = plugin_server_pid(gw, rbac.path), plugin_server_pid(gw, PLUGINS / "sv-jwt.py")
        before = [cpu_seconds(p) for p in pids]
        case.seconds, case.latencies, case.errors = asyncio.run(drive(url, case, tokens, total, concurrency))
        after = [cpu_seconds(p) for p in pids]
    finally:
        gw.stop()
    case.requests = total
    case.rbac_cpu_us, case.jwt_cpu_us = ((a - b) / total * 1e6 for a, b in zip(after, before, strict=True))


def count_trips(backend: str, case: Case, issuer: Issuer, tokens: list[str], total: int, concurrency: int) -> None:
    """RPCs per request of sv-rbac and sv-jwt, each in a counting server, after a warm-up request set."""
    rbac = PluginEntry("sv-rbac", ME)
    gw = EmulatorProcess(kong_yml(backend, case, issuer.jwks_url), [
        PluginEntry("sv-jwt", BENCH_PLUGINS / "sv-jwt-counted.py"), rbac], strict=False)  # fmt: skip
    gw.conf_extra = {"log_level": "warn"}
    gw.start()
    prefix = gw.workdir
    try:
        asyncio.run(drive(gw.url + case.path, case, tokens, total, concurrency))
        counts = {}
        for name, entry in (("sv-rbac", ME), ("sv-jwt", BENCH_PLUGINS / "sv-jwt-counted.py")):
            os.kill(plugin_server_pid(gw, entry), 15)
            dump = prefix / f"rpc-counts-{name}.json"
            for _ in range(100):
                if dump.exists() and dump.read_text():
                    break
                time.sleep(0.05)
            counts[name] = json.loads(dump.read_text())
    finally:
        gw.stop()
    per = {n: (c["HandleEvent"] + c["Step"]) / c["HandleEvent"] for n, c in counts.items()}
    case.rbac_trips, case.jwt_trips = per["sv-rbac"], per["sv-jwt"]


def report(args, cases: list[Case], elapsed: float) -> str:
    rows = [
        "| case | sv-rbac PDK round trips / request | sv-rbac plugin-server CPU µs/req | sv-jwt round trips "
        "| sv-jwt CPU µs/req | req/s | p50 ms | p99 ms | unexpected statuses |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for c in cases:
        rows.append(
            f"| {c.name} | {c.rbac_trips:.2f} | {c.rbac_cpu_us:,.0f} | {c.jwt_trips:.2f} | {c.jwt_cpu_us:,.0f} "
            f"| {c.requests / c.seconds:,.0f} | {c.pct(50):.2f} | {c.pct(99):.2f} | {c.errors} |"
        )
    happy = [c for c in cases if c.expect == 200]
    rbac_max = max(c.rbac_trips for c in happy)
    jwt_max = max(c.jwt_trips for c in happy)
    budget = [
        "| plugin | round trips / request (happy path) | where measured |",
        "|---|---|---|",
        f"| sv-jwt | {jwt_max:.2f} | this run (counting server) |",
        f"| sv-rbac | {min(c.rbac_trips for c in happy):.2f}–{rbac_max:.2f} | this run (counting server) |",
        "| sv-quota | 3 (user route: access only) – 7 (story creation: access + sv-quota-log) | "
        "docs/benchmarks-quota.md (PDK round trips per request) |",
        f"| **chain** | **{jwt_max + min(c.rbac_trips for c in happy) + 3:.0f}–{jwt_max + rbac_max + 7:.0f}** | "
        "docs/architecture.md §9 target: **≤ 9** |",
    ]
    command = (
        f"python -m bench.rbac_bench -n {args.requests} -c {args.concurrency} --tokens {args.tokens} "
        f"--rounds {args.rounds}"
    )
    return "\n".join(
        [
            "# Benchmarks: sv-rbac",
            "",
            "Numbers from one run, every case side by side on the same machine; compare ratios, not absolutes.",
            "",
            f"Command: `{command}` ({elapsed:.0f} s)  ",
            f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
            f"{time.strftime('%Y-%m-%d %H:%M')}, load average {args.load:.1f} before the run and "
            f"{args.load_end:.1f} after (other work shares these cores); the cases interleaved over {args.rounds} "
            "rounds (A, B, C, D, A, ...), the median round shown with the min–max of sv-rbac's CPU; sv-jwt's "
            "denylist in a redis-server of the bench's own on a free port",
            "",
            "## Through the emulator: round trips and plugin-server CPU",
            "",
            f"sv-jwt then sv-rbac on one route-scoped route (each in its own plugin server, as kong.conf runs them), "
            f"{args.concurrency} concurrent keep-alive clients, {args.requests:,} requests per case after a warm-up, "
            f"{args.tokens} distinct RS256 tokens cycled. CPU is utime+stime from /proc of each plugin-server process "
            "over the measured run. Round trips are the RPCs a plugin server answered per request (HandleEvent + one "
            "Step per PDK call), counted in separate counting servers (bench/rbac_bench.py runs sv-rbac under "
            "bench/plugins/jwt_rpc_counter.py; bench/plugins/sv-jwt-counted.py) so that counting costs nothing in the "
            "CPU runs.",
            "",
            *rows,
            "",
            f"Unexpected statuses over the whole run: {STATUSES or 'none'}.",
            "",
            "What sv-rbac's round trips are (kong-plugins/src/storyverse_plugins/rbac/handler.py): the access event "
            "(HandleEvent) plus `ctx.shared.get(identity)`; `request.get_uri_captures()` only when the decision needs "
            "a capture (owned ids, or a child on a kind-capture route); `request.get_method()` never on a "
            "route-scoped single-method route (the route's `methods` are read once per instance with "
            "`router.get_route()`, amortised to 0 per request); a refusal adds `ctx.shared.get(request id)` + "
            "`response.exit`.",
            "",
            "## The chain budget (docs/architecture.md §9)",
            "",
            *budget,
            "",
            "sv-quota's figure is its own benchmark's count (it also runs a log event). The measured chain is over "
            "the ≤ 9 target as long as every plugin pays its own access event: the per-plugin event cost (HandleEvent "
            "+ the identity read) is the part a shared-event or faster plugin server would remove.",
            "",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", "--requests", type=int, default=3000)
    parser.add_argument("-c", "--concurrency", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds of the cases")
    parser.add_argument("-o", "--output", default=str(REPO / "docs" / "benchmarks-rbac.md"))
    args = parser.parse_args()
    global REDIS_PORT
    args.load = os.getloadavg()[0]
    redis_proc, REDIS_PORT, _ = start_redis()
    started = time.monotonic()
    issuer = Issuer()
    port = free_port()
    backend = subprocess.Popen(
        [sys.executable, "-m", "sample_backend", f"bench={port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_port(port, proc=backend)
        url = f"http://127.0.0.1:{port}"
        tokens = {case.name: [token(issuer, case.role) for _ in range(args.tokens)] for case in CASES}
        runs: dict[str, list[tuple]] = {case.name: [] for case in CASES}
        for _ in range(args.rounds):  # interleaved: every case once per round
            for case in CASES:
                measure(url, case, issuer, tokens[case.name], args.requests, args.concurrency)
                runs[case.name].append((case.rbac_cpu_us, case.jwt_cpu_us, case.seconds, case.latencies, case.errors))
        for case in CASES:
            ordered = sorted(runs[case.name], key=lambda r: r[0])
            case.rbac_cpu_us, case.jwt_cpu_us, case.seconds, case.latencies, case.errors = ordered[len(ordered) // 2]
            case.name += f" [sv-rbac CPU over rounds {ordered[0][0]:,.0f}–{ordered[-1][0]:,.0f} µs]"
            count_trips(url, case, issuer, tokens[case.name.split(" [")[0]], 300, args.concurrency)
            print(f"{case.rbac_trips:.2f} trips {case.rbac_cpu_us:8.0f} µs/req sv-rbac  {case.name}", flush=True)
    finally:
        backend.terminate()
        backend.wait(10)
        issuer.close()
        args.load_end = os.getloadavg()[0]
        redis_proc.terminate()
        redis_proc.wait(10)
    text = report(args, CASES, time.monotonic() - started)
    Path(args.output).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
