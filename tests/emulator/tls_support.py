"""Certificates for the upstream TLS tests: a root CA, an intermediate, leaf certificates (cryptography), and an HTTPS
upstream on its own thread that records the SNI each handshake carried. Imported by name."""

from __future__ import annotations

import asyncio
import datetime
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from kong_emulator.testing import free_port


@dataclass
class Issued:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def pem(self) -> str:
        return self.cert.public_bytes(serialization.Encoding.PEM).decode()


def issue(name: str, issuer: Issued | None = None, *, ca: bool = False, dns: tuple[str, ...] = ()) -> Issued:
    """A certificate for `name` signed by `issuer` (self-signed when None); `ca` sets the CA basic constraint."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.cert.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if dns:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(d) for d in dns]), critical=False)
    return Issued(builder.sign(issuer.key if issuer else key, hashes.SHA256()), key)


class HTTPSUpstream:
    """GET /echo → JSON {sni, path}; serves `chain` (leaf first) with the leaf's key."""

    def __init__(self, directory: Path, leaf: Issued, *intermediates: Issued) -> None:
        self.port = free_port()
        self.snis: list[str | None] = []
        chain = directory / f"chain-{self.port}.pem"
        chain.write_text(leaf.pem + "".join(i.pem for i in intermediates))
        key = directory / f"key-{self.port}.pem"
        key.write_bytes(
            leaf.key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(chain, key)
        self.ctx.sni_callback = lambda sock, name, ctx: self.snis.append(name)
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def echo(request: web.Request) -> web.Response:
            return web.json_response({"path": request.raw_path, "host": request.headers.get("Host")})

        async def start() -> None:
            app = web.Application()
            app.router.add_get("/echo", echo)
            self._runner = web.AppRunner(app, access_log=None)
            await self._runner.setup()
            await web.TCPSite(self._runner, "127.0.0.1", self.port, ssl_context=self.ctx).start()

        self._loop.run_until_complete(start())
        self._ready.set()
        self._loop.run_forever()

    def start(self) -> HTTPSUpstream:
        self._thread.start()
        self._ready.wait(10)
        return self

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
