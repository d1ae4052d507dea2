"""Helpers for the authorization matrix (tests/e2e/test_authz_matrix.py).

`SmtpSink`: a minimal SMTP server the auth service delivers to (MAIL_BACKEND=smtp), so the test reads a co-parent
invitation exactly as the invited person would: from the e-mail. The invitation token is HMAC'd at rest and the
default `outbox` mailer lives in the gunicorn workers' memory, so neither the database nor the outbox can give it.

`Principal`: one user's app behind its own client address (X-Real-IP, trusted from 127.0.0.1 as Kong's realip
module does behind a load balancer), so per-IP throttles of public routes count per household, not per test.
"""

from __future__ import annotations

import email
import email.policy
import itertools
import re
import socketserver
import threading
import time
from dataclasses import dataclass, field

import requests

# --- SMTP sink ------------------------------------------------------------------------------------------------------


class _Handler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        sink: SmtpSink = self.server.sink  # type: ignore[attr-defined]
        self._say("220 authz-sink ESMTP")
        rcpt: list[str] = []
        while True:
            line = self.rfile.readline()
            if not line:
                return
            verb = line.decode("ascii", "replace").strip().split(" ", 1)[0].upper()
            if verb in ("EHLO", "HELO"):
                self._say("250 authz-sink")
            elif verb == "MAIL":
                rcpt = []
                self._say("250 OK")
            elif verb == "RCPT":
                rcpt.append(line.decode("ascii", "replace").split(":", 1)[1].strip().strip("<>").lower())
                self._say("250 OK")
            elif verb == "DATA":
                self._say("354 end with <CRLF>.<CRLF>")
                data = bytearray()
                while True:
                    chunk = self.rfile.readline()
                    if not chunk or chunk in (b".\r\n", b".\n"):
                        break
                    data += chunk[1:] if chunk.startswith(b"..") else chunk
                sink.deliver(rcpt, bytes(data))
                self._say("250 queued")
            elif verb == "QUIT":
                self._say("221 bye")
                return
            else:  # RSET, NOOP, ...
                self._say("250 OK")

    def _say(self, text: str) -> None:
        self.wfile.write(text.encode() + b"\r\n")


class SmtpSink:
    """`with SmtpSink() as sink:` ... `sink.port`; `sink.wait_for(address)` → the decoded text body."""

    def __init__(self) -> None:
        self._mails: list[tuple[list[str], str]] = []
        self._cond = threading.Condition()
        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.sink = self  # type: ignore[attr-defined]
        self.port = self._server.server_address[1]

    def __enter__(self) -> SmtpSink:
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def deliver(self, rcpt: list[str], raw: bytes) -> None:
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        part = msg.get_body(preferencelist=("plain",)) if msg.is_multipart() else msg
        with self._cond:
            self._mails.append((rcpt, part.get_content()))
            self._cond.notify_all()

    def wait_for(self, address: str, seconds: float = 15.0) -> str:
        deadline = time.monotonic() + seconds
        with self._cond:
            while True:
                for rcpt, body in self._mails:
                    if address.lower() in rcpt:
                        return body
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no mail to {address} after {seconds}s")
                self._cond.wait(left)


def link_token(body: str) -> str:
    match = re.search(r"[?&]token=([A-Za-z0-9_\-]+)", body)
    assert match, "no token link in the mail"
    return match.group(1)


# --- principals -----------------------------------------------------------------------------------------------------

_setup_ips = (f"192.0.2.{n}" for n in itertools.cycle(range(1, 255)))
_ip_lock = threading.Lock()


def setup_ip() -> str:
    """A fresh TEST-NET-1 address for one setup call: setup traffic never eats a cell's per-IP budget."""
    with _ip_lock:
        return next(_setup_ips)


@dataclass
class Session:
    access: str
    refresh: str | None = None
    session_id: str | None = None


@dataclass
class Principal:
    """A user (or nobody) behind one client address; `main` is the session its cells use."""

    name: str
    ip: str
    main: Session | None = None
    spare: Session | None = None  # a second session: survives logout of `main` (password change runs on it)
    victim: Session | None = None  # a third session: the target of DELETE /auth/sessions/{id}
    email: str | None = None
    password: str | None = None
    extra: dict = field(default_factory=dict)

    @property
    def token(self) -> str | None:
        return self.main.access if self.main else None


def call(
    base: str, method: str, path: str, body=None, token: str | None = None, ip: str | None = None
) -> requests.Response:
    headers = {"X-Real-IP": ip or setup_ip()}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return requests.request(method, base + path, json=body, headers=headers, timeout=30)


def session_of(resp: requests.Response) -> Session:
    assert resp.status_code in (200, 201), resp.text
    body = resp.json()
    return Session(body["access_token"], body.get("refresh_token"), body.get("session_id"))


def problem_code(resp: requests.Response) -> str | None:
    if not resp.headers.get("Content-Type", "").startswith("application/problem+json"):
        return None
    try:
        return resp.json().get("code")
    except ValueError:
        return None
