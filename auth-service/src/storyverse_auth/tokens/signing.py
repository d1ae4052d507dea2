"""Signing keys: generation, encryption at rest, rotation (next → active → retired), JWKS and an in-process cache.

The service signs with two algorithms (docs/architecture.md §4): access tokens with ``JWT_ALGORITHM`` and OIDC ID
tokens with RS256 (OIDC Core 1.0 §15.1). Each algorithm it signs with has its own active and next key (at most one
of each: ``uq_signing_keys_active_next``); the same key serves both kinds when ``JWT_ALGORITHM`` is RS256.

Lifecycle, per algorithm: ``rotate`` retires the active key (kept in the JWKS for one access-token lifetime plus
leeway), promotes the *next* key (already published by the previous rotation, so verifiers have cached it) and
publishes a new next key. The keys of an algorithm the service no longer signs with (``JWT_ALGORITHM`` changed) are
retired by the first rotation after which ``JWT_ALGORITHM`` has an active key; until then its active key keeps
signing access tokens (``_access_signer``), so a key of the new algorithm signs only once it was published.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from flask import current_app
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm
from sqlalchemy import or_, select, text, update

from .. import secrets_box
from ..clock import now
from ..extensions import db
from ..models import SigningKey

ALGORITHMS = ("RS256", "ES256", "EdDSA")
ID_TOKEN_ALGORITHM = "RS256"  # noqa: S105 (not a secret). OIDC Core 1.0 §15.1: every provider MUST support RS256 ID tokens
PUBLISH_LEEWAY_SECONDS = 60
PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
_ADVISORY_LOCK = 0x5354_4B45  # "STKE"
_LIVE = ("active", "next")


@dataclass(frozen=True)
class ActiveKey:
    kid: str
    algorithm: str
    private_key: Any


@dataclass(frozen=True)
class Rotation:
    """What ``rotate`` did to one algorithm: the key it retired and the key that signs from now on (None: none)."""

    algorithm: str
    retired: str | None
    active: str | None


def signing_algorithms() -> tuple[str, ...]:
    """The algorithms the service signs with: ``JWT_ALGORITHM`` (access tokens) first, then RS256 (ID tokens)."""
    return tuple(dict.fromkeys((current_app.config["JWT_ALGORITHM"], ID_TOKEN_ALGORITHM)))


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
        signed_access_tokens=False,
    )
    db.session.add(key)
    return key


def _lock() -> None:
    db.session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _ADVISORY_LOCK})


def _live_keys() -> dict[tuple[str, str], SigningKey]:
    """The active and next keys by (algorithm, state)."""
    keys = db.session.scalars(select(SigningKey).where(SigningKey.state.in_(_LIVE)))
    return {(k.algorithm, k.state): k for k in keys}


def _access_signer(actives: dict[str, SigningKey]) -> SigningKey | None:
    """The key that signs access tokens: the active key of ``JWT_ALGORITHM``; while that algorithm has none yet
    (``JWT_ALGORITHM`` just changed), the active key of an algorithm no longer signed with (the one it replaces, the
    most recently activated if several), else the RS256 one. None before the first key exists."""
    if current_app.config["JWT_ALGORITHM"] in actives:
        return actives[current_app.config["JWT_ALGORITHM"]]
    signed = signing_algorithms()
    order = sorted(actives.values(), key=lambda k: (k.algorithm in signed, -(k.activated_at or now()).timestamp()))
    return order[0] if order else None


def _must_sign_at_once(algorithm: str, live: dict[tuple[str, str], SigningKey]) -> bool:
    """Whether a missing active key of ``algorithm`` is created active at once rather than published as next first:
    RS256 has no stand-in for ID tokens, and access tokens have none before any active key exists."""
    return algorithm == ID_TOKEN_ALGORITHM or not any(state == "active" for _, state in live)


def ensure_keys() -> bool:
    """Make sure every algorithm the service signs with has a next key, and an active one unless another active key
    signs its access tokens until the next rotation promotes it; return True if a key was created. The caller
    commits."""
    _lock()
    live = _live_keys()
    created = False
    for algorithm in signing_algorithms():
        if (algorithm, "active") not in live and _must_sign_at_once(algorithm, live):
            new_key("active", algorithm)
            created = True
        if (algorithm, "next") not in live:
            new_key("next", algorithm)
            created = True
    return created


def _retire(key: SigningKey | None, ts: datetime) -> str | None:
    """Retire ``key``: an active key stays published one access-token lifetime plus leeway (its tokens, and those a
    process signed with it from its cache, are still valid); a next key never signed anything and leaves at once."""
    if key is None:
        return None
    ttl = current_app.config["ACCESS_TOKEN_TTL"] + PUBLISH_LEEWAY_SECONDS if key.state == "active" else 0
    key.state, key.retired_at, key.publish_until = "retired", ts, ts + timedelta(seconds=ttl)
    db.session.flush()
    return key.kid


def _promote(algorithm: str, live: dict[tuple[str, str], SigningKey], ts: datetime) -> Rotation:
    promoted = live.get((algorithm, "next"))
    if promoted is None:  # a new algorithm: nothing published yet to promote (ensure_keys publishes it below)
        active = live.get((algorithm, "active"))
        return Rotation(algorithm, None, active.kid if active else None)
    retired = _retire(live.get((algorithm, "active")), ts)
    promoted.state, promoted.activated_at = "active", ts
    db.session.flush()
    new_key("next", algorithm)
    return Rotation(algorithm, retired, promoted.kid)


def rotate() -> list[Rotation]:
    """Rotate every algorithm the service signs with; retire the keys of the others once ``JWT_ALGORITHM`` has an
    active key (until then the replaced algorithm's active key signs access tokens). The caller commits."""
    _lock()
    ts = now()
    live = _live_keys()
    done = [_promote(algorithm, live, ts) for algorithm in signing_algorithms()]
    ensure_keys()
    live = _live_keys()
    if (current_app.config["JWT_ALGORITHM"], "active") in live:
        for algorithm in sorted({a for a, _ in live} - set(signing_algorithms())):
            retired = _retire(live.get((algorithm, "active")), ts)
            _retire(live.get((algorithm, "next")), ts)
            done.append(Rotation(algorithm, retired, None))
    _cache.clear()
    return done


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
            .where(or_(SigningKey.state.in_(_LIVE), SigningKey.publish_until >= now()))
            .order_by(SigningKey.created_at)
        )
    )


def access_token_algorithms() -> list[str]:
    """The algorithms of the published keys that signed, sign or will sign access tokens, the signing key's first
    (discovery): keys that ever signed one (``signed_access_tokens``), the current signer, and every key of
    ``JWT_ALGORITHM``. An RS256 key that only signs ID tokens is not one. Before the first key exists: the algorithm
    new keys get."""
    keys = published_keys()
    signer = _access_signer({k.algorithm: k for k in keys if k.state == "active"})
    wanted = current_app.config["JWT_ALGORITHM"]
    found = [k.algorithm for k in keys if k.signed_access_tokens or k is signer or k.algorithm == wanted]
    first = [signer.algorithm] if signer is not None else [wanted]
    return list(dict.fromkeys(first + found))


def active_uses() -> dict[str, str]:
    """kid → what each active key signs now: ``access``, ``id`` or ``access+id`` (``flask keys list``)."""
    actives = {k.algorithm: k for k in db.session.scalars(select(SigningKey).where(SigningKey.state == "active"))}
    uses: dict[str, list[str]] = {}
    signer = _access_signer(actives)
    if signer is not None:
        uses[signer.kid] = ["access"]
    if ID_TOKEN_ALGORITHM in actives:
        uses.setdefault(actives[ID_TOKEN_ALGORITHM].kid, []).append("id")
    return {kid: "+".join(names) for kid, names in uses.items()}


def jwks() -> dict[str, Any]:
    """The public JWK set; private members are stripped defensively even though they are never stored there."""
    return {"keys": [{k: v for k, v in key.public_jwk.items() if k not in PRIVATE_MEMBERS} for key in published_keys()]}


def _load_active(algorithm: str | None) -> SigningKey | None:
    actives = {k.algorithm: k for k in db.session.scalars(select(SigningKey).where(SigningKey.state == "active"))}
    return _access_signer(actives) if algorithm is None else actives.get(algorithm)


def _mark_access_signer(key: SigningKey) -> None:
    """Record, once per key and in its own transaction, that ``key`` signs access tokens (discovery lists its
    algorithm for as long as the key is published)."""
    if not key.signed_access_tokens:
        with db.engine.begin() as conn:
            conn.execute(update(SigningKey).where(SigningKey.kid == key.kid).values(signed_access_tokens=True))


class _KeyCache:
    """Per-process cache of the decrypted active keys (per purpose) and the public verification keys."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active: dict[str, tuple[float, ActiveKey]] = {}
        self._public: dict[str, tuple[float, str, Any]] = {}

    def clear(self) -> None:
        with self._lock:
            self._active.clear()
            self._public.clear()

    def active(self, algorithm: str | None) -> ActiveKey:
        """The active key of ``algorithm``, or (None) the key that signs access tokens (``_access_signer``)."""
        ttl = current_app.config["KEY_CACHE_SECONDS"]
        slot = algorithm or "access:" + current_app.config["JWT_ALGORITHM"]
        with self._lock:
            hit = self._active.get(slot)
            if hit and time.monotonic() - hit[0] < ttl:
                return hit[1]
        key = _load_active(algorithm)
        if key is None:
            ensure_keys()
            db.session.commit()
            key = _load_active(algorithm)
        if key is None:
            raise RuntimeError(f"no active signing key for {slot}")  # ensure_keys creates one: not reachable
        if algorithm is None:
            _mark_access_signer(key)
        pem = secrets_box.decrypt(key.private_key_encrypted, key.kid.encode())
        loaded = ActiveKey(key.kid, key.algorithm, serialization.load_pem_private_key(pem, password=None))
        with self._lock:
            self._active[slot] = (time.monotonic(), loaded)
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


def active_key(algorithm: str | None = None) -> ActiveKey:
    """The active key of ``algorithm`` (``ID_TOKEN_ALGORITHM`` for ID tokens); by default the key that signs access
    tokens, of ``JWT_ALGORITHM`` once that algorithm has an active key."""
    return _cache.active(algorithm)


def public_key(kid: str) -> tuple[str, Any] | None:
    return _cache.public(kid)


def clear_cache() -> None:
    _cache.clear()
