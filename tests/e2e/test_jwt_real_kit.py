"""sv-jwt end-to-end kit for tests against the REAL auth service. No tests here (named test_jwt_* to sit with them).

- ``Account``: register + login through the auth service's HTTP API (real access and refresh tokens).
- ``sign_with_auth_service_key``: tokens signed by the auth service's own active signing key, read from its database
  through its own code (``storyverse_auth.tokens.signing.active_key``, test KEK). Used only where the auth service
  will not issue the token we need (``nbf`` in the future, ``crit``, a different ``typ``...): the signature is then
  genuinely valid, so each test proves that the one claim or header under test is what gets the token refused.
- ``CountingProxy``: an HTTP proxy in front of the auth service's JWKS that counts fetches and can be switched to
  "down" or "garbage"; ``Listener`` counts any hit (for ``jku``/``x5u``: the gateway must never fetch them).
- ``FakeRedis``: a TCP server speaking just enough RESP to answer ``EXISTS`` with something that is not a count.
"""

from __future__ import annotations

import base64
import json
import socket
import socketserver
import subprocess
import sys
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import requests
from e2e_support import AUTH_DIR, auth_env

PASSWORD = "correct horse battery staple e2e"


def b64url(data: bytes | dict) -> str:
    raw = json.dumps(data, separators=(",", ":")).encode() if isinstance(data, dict) else data
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def unverified(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(header, payload) of a JWT, without verification (to build attack variants of a real token)."""
    head, body, _ = token.split(".")
    pad = lambda s: s + "=" * (-len(s) % 4)  # noqa: E731
    return json.loads(base64.urlsafe_b64decode(pad(head))), json.loads(base64.urlsafe_b64decode(pad(body)))


class Account:
    """A parent account registered through the auth service; ``login()`` opens a new session."""

    def __init__(self, auth_url: str) -> None:
        self.url = auth_url
        self.email = f"e2e-{uuid.uuid4().hex[:12]}@example.com"
        resp = requests.post(
            f"{auth_url}/api/auth/register",
            json={"email": self.email, "password": PASSWORD, "display_name": "E2E Parent", "time_zone": "Europe/Paris"},
            timeout=10,
        )
        assert resp.status_code == 202, resp.text

    def login(self, auth_url: str | None = None) -> dict[str, Any]:
        resp = requests.post(
            f"{auth_url or self.url}/api/auth/login", json={"email": self.email, "password": PASSWORD}, timeout=10
        )
        assert resp.status_code == 200, resp.text
        return resp.json()


_MINT = r"""
import json, sys
import jwt
from storyverse_auth import create_app
from storyverse_auth.tokens import signing

def b64(data):
    import base64
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

app = create_app()
with app.app_context():
    key = signing.active_key(sys.argv[1] or None)
    algo = jwt.get_algorithm_by_name(key.algorithm)
    out = []
    for item in json.load(sys.stdin):
        header = {"alg": key.algorithm, "kid": key.kid, "typ": "at+jwt", **item["header"]}
        header = {k: v for k, v in header.items() if v is not None}
        signing_input = f"{b64(header)}.{b64(item['claims'])}"
        signature = algo.sign(signing_input.encode(), key.private_key)
        out.append(signing_input + "." + jwt.utils.base64url_encode(signature).decode())
    print(json.dumps(out))
"""


def sign_with_auth_service_key(
    issuer: str, redis_db: int, items: list[dict[str, Any]], algorithm: str = ""
) -> list[str]:
    """Sign each ``{"header": {...}, "claims": {...}}`` with the auth service's active key of ``algorithm`` (by
    default the one that signs access tokens; None drops a header member)."""
    env = auth_env("storyverse_e2e", redis_db, issuer)
    proc = subprocess.run(
        [sys.executable, "-c", _MINT, algorithm],
        input=json.dumps(items),
        cwd=AUTH_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


class _Server:
    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_port
        threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


class CountingProxy(_Server):
    """GET /jwks.json → the upstream JWKS (``mode`` "up"), a 503 ("down") or ``garbage`` bytes; counts every GET."""

    def __init__(self, upstream: str, mode: str = "up", garbage: bytes = b"") -> None:
        self.upstream, self.mode, self.garbage, self.fetches = upstream, mode, garbage, 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                proxy.fetches += 1
                if proxy.mode == "up":
                    upstream = requests.get(proxy.upstream, timeout=5)
                    status, body = upstream.status_code, upstream.content
                elif proxy.mode == "garbage":
                    status, body = 200, proxy.garbage
                else:
                    status, body = 503, b"down"
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        super().__init__(Handler)
        self.url = f"http://127.0.0.1:{self.port}/jwks.json"


class Listener(_Server):
    """Counts every request (an attacker's ``jku``/``x5u`` endpoint, or a kid's ``curl`` target)."""

    def __init__(self) -> None:
        self.hits = 0
        listener = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                listener.hits += 1
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: Any) -> None:
                pass

        super().__init__(Handler)
        self.url = f"http://127.0.0.1:{self.port}"


class FakeRedis:
    """Something on the Redis port that is not quite Redis.

    ``hello_ok`` False: answers every command ``+OK``, HELLO included: redis-py's handshake then raises a plain
    AttributeError (not a RedisError), the kind of unforeseen exception only the handler's catch-all stops.
    ``hello_ok`` True: a proper HELLO reply, then ``EXISTS`` answered with a bulk string instead of a count.
    """

    def __init__(self, hello_ok: bool = True) -> None:
        fake = self
        self.exists_calls = 0

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                while True:
                    line = self.rfile.readline()
                    if not line.startswith(b"*"):
                        return
                    args = []
                    for _ in range(int(line[1:])):
                        size = int(self.rfile.readline()[1:])
                        args.append(self.rfile.read(size + 2)[:-2])
                    if args and args[0].upper() == b"HELLO" and hello_ok:
                        self.wfile.write(b"%1\r\n$5\r\nproto\r\n:3\r\n")  # RESP3 map {proto: 3}
                    elif args and args[0].upper() == b"EXISTS":
                        fake.exists_calls += 1
                        self.wfile.write(b"$3\r\nabc\r\n")
                    else:
                        self.wfile.write(b"+OK\r\n")
                    self.wfile.flush()

        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def dead_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
