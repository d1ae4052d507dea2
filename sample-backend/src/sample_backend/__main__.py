"""Run the stand-in services: `python -m sample_backend stories=9101 characters=9102 ...` (one port each).

`--tls-cert FILE --tls-key FILE`: serve HTTPS only (TLS 1.2+), as Kong reaches the backends in `make run`."""

from __future__ import annotations

import argparse
import asyncio
import signal
import ssl
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


def server_tls(cert: str | None, key: str | None) -> ssl.SSLContext | None:
    """The listeners' TLS context: TLS 1.2 or newer with `cert`/`key`; None (plain HTTP) when neither is given."""
    if not cert and not key:
        return None
    if not (cert and key):
        raise SystemExit("sample_backend: --tls-cert and --tls-key go together")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    return ctx


async def serve(services: list[tuple[str, int]], host: str, tls: ssl.SSLContext | None = None) -> None:
    runners = []
    scheme = "https" if tls else "http"
    for name, port in services:
        runner = web.AppRunner(make_app(name), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, host, port, ssl_context=tls).start()
        runners.append(runner)
        print(f"sample backend (stand-in) '{name}' on {scheme}://{host}:{port}", file=sys.stderr, flush=True)
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
    parser.add_argument("--tls-cert", help="serve HTTPS with this certificate (PEM)")
    parser.add_argument("--tls-key", help="the certificate's private key (PEM)")
    args = parser.parse_args(argv)
    asyncio.run(serve(parse_listen(args.services), args.host, server_tls(args.tls_cert, args.tls_key)))


if __name__ == "__main__":
    main()
