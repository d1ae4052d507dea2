"""Signing keys: generation, encryption at rest, rotation (next → active → retired), JWKS and an in-process cache.

Lifecycle: ``rotate`` retires the active key (kept in the JWKS for one access-token lifetime plus leeway), promotes
the *next* key (already published by the previous rotation, so verifiers have cached it) and publishes a new next key.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from flask import current_app
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm
from sqlalchemy import or_, select, text

from .. import secrets_box
from ..clock import now
from ..extensions import db
from ..models import SigningKey

ALGORITHMS = ("RS256", "ES256", "EdDSA")
PUBLISH_LEEWAY_SECONDS = 60
PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
_ADVISORY_LOCK = 0x5354_4B45  # "STKE"


@dataclass(frozen=True)
class ActiveKey:
    kid: str
    algorithm: str
    private_key: Any


def _generate(algorithm: str) -> tuple[Any, dict[str, Any]]:
    if algorithm == "RS256":
        key: Any = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        jwk = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    elif algorithm == "ES256":
        key = ec.generate_private_key(ec.SECP256R1())
        jwk = ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
    elif algorithm == "EdDSA":
        key = ed25519.Ed25519PrivateKey.generate()
        jwk = OKPAlgorithm.to_jwk(key.public_key(), as_dict=True)
    else:
        raise ValueError(f"unsupported signing algorithm {algorithm!r}; allowed: {ALGORITHMS}")
    return key, jwk


def new_key(state: str, algorithm: str | None = None) -> SigningKey:
    """Create (and add to the session) a key in ``state``; the caller commits."""
    algorithm = algorithm or current_app.config["JWT_ALGORITHM"]
    private, jwk = _generate(algorithm)
    kid = secrets.token_urlsafe(12)
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    jwk.update({"kid": kid, "alg": algorithm, "use": "sig"})
    ts = now()
    key = SigningKey(
        kid=kid,
        algorithm=algorithm,
        state=state,
        public_jwk=jwk,
        private_key_encrypted=secrets_box.encrypt(pem, kid.encode()),
        created_at=ts,
        activated_at=ts if state == "active" else None,
    )
    db.session.add(key)
    return key


def _lock() -> None:
    db.session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _ADVISORY_LOCK})


def ensure_keys() -> bool:
    """Make sure an active and a next key exist; return True if one was created. The caller commits."""
    _lock()
    states = set(db.session.scalars(select(SigningKey.state).where(SigningKey.state.in_(("active", "next")))))
    if "active" not in states:
        new_key("active")
    if "next" not in states:
        new_key("next")
    return states != {"active", "next"}


def rotate() -> tuple[str | None, str]:
    """Retire the active key, promote the next one, publish a new next. Returns (retired kid, active kid)."""
    _lock()
    ts = now()
    keys = {k.state: k for k in db.session.scalars(select(SigningKey).where(SigningKey.state.in_(("active", "next"))))}
    retired = keys.get("active")
    if retired is not None:
        retired.state = "retired"
        retired.retired_at = ts
        ttl = current_app.config["ACCESS_TOKEN_TTL"] + PUBLISH_LEEWAY_SECONDS
        retired.publish_until = ts + timedelta(seconds=ttl)
        db.session.flush()
    promoted = keys.get("next")
    if promoted is None:
        promoted = new_key("active")
    else:
        promoted.state = "active"
        promoted.activated_at = ts
    db.session.flush()
    new_key("next")
    _cache.clear()
    return (retired.kid if retired else None, promoted.kid)


def prune() -> int:
    """Delete retired keys no longer published. The caller commits."""
    old = db.session.scalars(
        select(SigningKey).where(SigningKey.state == "retired", SigningKey.publish_until < now())
    ).all()
    for key in old:
        db.session.delete(key)
    return len(old)


def published_keys() -> list[SigningKey]:
    return list(
        db.session.scalars(
            select(SigningKey)
            .where(or_(SigningKey.state.in_(("active", "next")), SigningKey.publish_until >= now()))
            .order_by(SigningKey.created_at)
        )
    )


def published_algorithms() -> list[str]:
    """The algorithms of the published keys, the active key's first: what tokens of this issuer are signed with
    (discovery documents). Before the first key exists: the algorithm new keys get."""
    order = {"active": 0, "next": 1}
    keys = sorted(published_keys(), key=lambda k: order.get(k.state, 2))
    found = list(dict.fromkeys(k.algorithm for k in keys))
    return found or [current_app.config["JWT_ALGORITHM"]]


def jwks() -> dict[str, Any]:
    """The public JWK set; private members are stripped defensively even though they are never stored there."""
    return {"keys": [{k: v for k, v in key.public_jwk.items() if k not in PRIVATE_MEMBERS} for key in published_keys()]}


class _KeyCache:
    """Per-process cache of the decrypted active key and the public verification keys."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active: tuple[float, ActiveKey] | None = None
        self._public: dict[str, tuple[float, str, Any]] = {}

    def clear(self) -> None:
        with self._lock:
            self._active = None
            self._public.clear()

    def active(self) -> ActiveKey:
        ttl = current_app.config["KEY_CACHE_SECONDS"]
        with self._lock:
            if self._active and time.monotonic() - self._active[0] < ttl:
                return self._active[1]
        key = db.session.scalars(select(SigningKey).where(SigningKey.state == "active")).first()
        if key is None:
            ensure_keys()
            db.session.commit()
            key = db.session.scalars(select(SigningKey).where(SigningKey.state == "active")).one()
        pem = secrets_box.decrypt(key.private_key_encrypted, key.kid.encode())
        loaded = ActiveKey(key.kid, key.algorithm, serialization.load_pem_private_key(pem, password=None))
        with self._lock:
            self._active = (time.monotonic(), loaded)
        return loaded

    def public(self, kid: str) -> tuple[str, Any] | None:
        """(algorithm, public key) for a published kid, or None. Unknown kids are looked up at most per request."""
        ttl = current_app.config["KEY_CACHE_SECONDS"]
        with self._lock:
            hit = self._public.get(kid)
            if hit and time.monotonic() - hit[0] < ttl:
                return hit[1], hit[2]
        key = next((k for k in published_keys() if k.kid == kid), None)
        if key is None:
            return None
        algo = {"RS256": RSAAlgorithm, "ES256": ECAlgorithm, "EdDSA": OKPAlgorithm}[key.algorithm]
        public = algo.from_jwk(json.dumps(key.public_jwk))
        with self._lock:
            self._public[kid] = (time.monotonic(), key.algorithm, public)
        return key.algorithm, public


_cache = _KeyCache()


def active_key() -> ActiveKey:
    return _cache.active()


def public_key(kid: str) -> tuple[str, Any] | None:
    return _cache.public(kid)


def clear_cache() -> None:
    _cache.clear()
