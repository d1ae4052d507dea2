"""sv-jwt test kit: keys, token minting, a real local JWKS HTTP server, Redis db 12. Imported by the test_jwt_* files.

(No tests here; it is named test_jwt_* only to sit among the sv-jwt test files.)
"""

from __future__ import annotations

import base64
import functools
import json
import socket
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import redis
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm
from storyverse_plugins.jwt_auth.jwks import parse_jwks
from storyverse_plugins.jwt_auth.tokens import VerifyConfig

ISSUER = "https://auth.storyverse.test"
AUDIENCE = "storyverse-api"
NOW = 1_800_000_000
VERIFY_CFG = VerifyConfig(issuer=ISSUER, audience=AUDIENCE, algorithms=frozenset({"RS256", "PS256", "ES256", "EdDSA"}))
REDIS_DB = 12


@functools.cache
def private_key(kind: str = "rsa") -> Any:
    """Session-wide keys: "rsa", "rsa2" (another RSA key), "ec", "ed"."""
    if kind.startswith("rsa"):
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if kind == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    return ed25519.Ed25519PrivateKey.generate()


ALG_OF = {"rsa": "RS256", "rsa2": "RS256", "ec": "ES256", "ed": "EdDSA"}
KID_OF = {"rsa": "rsa-1", "rsa2": "rsa-2", "ec": "ec-1", "ed": "ed-1"}


def jwk_of(kind: str, kid: str | None = None, **extra: Any) -> dict[str, Any]:
    public = private_key(kind).public_key()
    to_jwk = {"rsa": RSAAlgorithm, "rsa2": RSAAlgorithm, "ec": ECAlgorithm, "ed": OKPAlgorithm}[kind].to_jwk
    jwk = to_jwk(public, as_dict=True)
    jwk.update({"kid": kid or KID_OF[kind], "use": "sig", "alg": ALG_OF[kind], **extra})
    return {k: v for k, v in jwk.items() if v is not None}


def jwks_doc(*kinds: str) -> dict[str, Any]:
    return {"keys": [jwk_of(kind) for kind in kinds or ("rsa", "ec", "ed")]}


def keyset(*kinds: str):
    keys, _ = parse_jwks(jwks_doc(*kinds), VERIFY_CFG.algorithms)
    return keys


def claims(now: float = NOW, **overrides: Any) -> dict[str, Any]:
    base = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "user-1",
        "iat": int(now),
        "nbf": int(now),
        "exp": int(now) + 600,
        "jti": str(uuid.uuid4()),
        "role": "parent",
        "family_id": "fam-1",
        "tier": "premium",
        "tz": "Europe/Paris",
        "sid": "sess-1",
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def mint(kind: str = "rsa", *, alg: str | None = None, headers: dict[str, Any] | None = None, **claim_overrides) -> str:
    """A token signed by a session key; ``headers`` override/add header members (None removes one)."""
    header = {"kid": KID_OF[kind], "typ": "at+jwt"}
    header.update(headers or {})
    header = {k: v for k, v in header.items() if v is not None}
    return jwt.encode(claims(**claim_overrides), private_key(kind), algorithm=alg or ALG_OF[kind], headers=header)


def b64(data: bytes | dict) -> str:
    raw = json.dumps(data).encode() if isinstance(data, dict) else data
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def raw_token(header: dict[str, Any], payload: dict[str, Any], signature: bytes = b"") -> str:
    """A hand-assembled token (for what PyJWT refuses to produce: alg none, HMAC with a PEM...)."""
    return f"{b64(header)}.{b64(payload)}.{b64(signature) if signature else ''}"


# --- a real JWKS server -------------------------------------------------------------------------------------------


class JwksServer:
    """``http.server`` in a thread serving ``self.doc`` at /jwks.json; counts GETs; can fail, stall or redirect."""

    def __init__(self, doc: dict[str, Any] | None = None) -> None:
        self.doc = doc if doc is not None else jwks_doc()
        self.status = 200
        self.body: bytes | None = None  # raw override
        self.delay = 0.0
        self.fetches = 0
        self.redirect_to: str | None = None
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.fetches += 1
                time.sleep(server.delay)
                if server.redirect_to:
                    self.send_response(302)
                    self.send_header("Location", server.redirect_to)
                    self.end_headers()
                    return
                body = server.body if server.body is not None else json.dumps(server.doc).encode()
                self.send_response(server.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_port}/jwks.json"
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.02,), daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


def serving():
    """Body of a ``jwks_server`` fixture (each test module declares its own two-line fixture)."""
    server = JwksServer()
    yield server
    server.close()


def dead_url() -> str:
    """An http URL on which nothing listens."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/jwks.json"


def redis_db12():
    """Body of a ``redis12`` fixture: Redis db 12, flushed before and after."""
    client = redis.Redis(host="127.0.0.1", port=6379, db=REDIS_DB)
    client.flushdb()
    yield client
    client.flushdb()


def plugin_config(jwks_url: str, **overrides: Any) -> dict[str, Any]:
    """A config as Kong sends it: every field, null when unset, plus Kong's own keys."""
    cfg: dict[str, Any] = {
        "jwks_url": jwks_url,
        "issuer": ISSUER,
        "audience": AUDIENCE,
        "algorithms": ["RS256", "ES256", "EdDSA"],
        "leeway": 30,
        "anonymous": False,
        "realm": "storyverse",
        "jwks_timeout": 1.0,
        "jwks_cache_ttl": 300,
        "jwks_refresh_min_interval": 30,
        "cache_size": 100,
        "denylist": True,
        "denylist_fault_tolerant": False,
        "redis_host": "127.0.0.1",
        "redis_port": 6379,
        "redis_database": REDIS_DB,
        "redis_username": None,
        "redis_password": None,
        "redis_ssl": False,
        "redis_timeout_ms": 50,
        "redis_cluster_nodes": None,
        "strip_header_prefixes": ["X-Sv-"],
        "max_request_headers": 100,
        "request_id_header": "X-Request-Id",
        "__plugin_id": str(uuid.uuid4()),
        "__seq__": 1,
        "route_id": None,
    }
    cfg.update(overrides)
    return cfg
