"""A real SMTP server for mail tests: aiosmtpd on a free port, STARTTLS with a self-signed certificate made here,
and AUTH (PLAIN/LOGIN) required after STARTTLS, as Amazon SES and most submission relays do."""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

USERNAME, PASSWORD = "ses-user", "ses-secret-password"


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for localhost / 127.0.0.1 and its key, written as PEM files into ``directory``."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    san = x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(san, critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "smtp-cert.pem", directory / "smtp-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


@dataclass
class Received:
    sender: str
    recipients: list[str]
    message: Message
    login: str
    tls: bool


@dataclass
class _Handler:
    received: list[Received] = field(default_factory=list)
    arrived: threading.Event = field(default_factory=threading.Event)

    async def handle_DATA(self, server, session, envelope) -> str:
        login = session.auth_data or ""  # what _authenticate put there: the user name
        tls = session.ssl is not None
        self.received.append(
            Received(envelope.mail_from, list(envelope.rcpt_tos), message_from_bytes(envelope.content), login, tls)
        )
        self.arrived.set()
        return "250 OK"


def _authenticate(server, session, envelope, mechanism, auth_data) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
        USERNAME.encode(),
        PASSWORD.encode(),
    )
    if not ok:
        return AuthResult(success=False, handled=False)  # aiosmtpd then answers 535
    return AuthResult(success=True, auth_data=auth_data.login.decode())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class SMTPServer:
    """``with SMTPServer(tmp_path) as smtp:`` → ``smtp.port``, ``smtp.ca_file``, ``smtp.wait()`` → the received mail.

    ``starttls=False`` runs a server that offers no STARTTLS (to prove the client refuses to go on in plain text)."""

    def __init__(self, directory: Path, starttls: bool = True) -> None:
        self.ca_file, key_file = self_signed(directory)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.ca_file, key_file)
        self.handler = _Handler()
        self.port = free_port()
        options = {"require_starttls": True, "tls_context": context} if starttls else {"auth_require_tls": False}
        self._controller = Controller(
            self.handler,
            hostname="127.0.0.1",
            port=self.port,
            auth_required=True,
            authenticator=_authenticate,
            **options,
        )

    def __enter__(self) -> SMTPServer:
        self._controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._controller.stop()

    def wait(self, subject: str = "", seconds: float = 10) -> Received:
        """The latest mail whose subject contains ``subject``, waiting up to ``seconds`` for it."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            found = [r for r in self.handler.received if subject in (r.message["Subject"] or "")]
            if found:
                return found[-1]
            self.handler.arrived.wait(0.05)
            self.handler.arrived.clear()
        raise AssertionError(f"no mail with subject containing {subject!r} arrived")
