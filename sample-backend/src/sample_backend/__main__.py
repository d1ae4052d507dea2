"""Run the stand-in services: `python -m sample_backend stories=9101 characters=9102 ...` (one port each)."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from aiohttp import web

from sample_backend.app import make_app

DEFAULT_SERVICES = ("stories=9101", "characters=9102", "universes=9103", "generation=9104")


def parse_listen(items: list[str]) -> list[tuple[str, int]]:
    out = []
    for item in items:
        name, _, port = item.partition("=")
        if not name or not port.isdigit():
            raise SystemExit(f"sample_backend: expected NAME=PORT, got {item!r}")
        out.append((name, int(port)))
    return out


async def serve(services: list[tuple[str, int]], host: str) -> None:
    runners = []
    for name, port in services:
        runner = web.AppRunner(make_app(name), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, host, port).start()
        runners.append(runner)
        print(f"sample backend (stand-in) '{name}' on http://{host}:{port}", file=sys.stderr, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    for runner in runners:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("services", nargs="*", default=list(DEFAULT_SERVICES))
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args(argv)
    asyncio.run(serve(parse_listen(args.services), args.host))


if __name__ == "__main__":
    main()
