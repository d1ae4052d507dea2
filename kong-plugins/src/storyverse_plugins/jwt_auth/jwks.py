"""The auth service's JWKS: parsed (public members only), cached, refetched on an unknown ``kid`` at a bounded rate.

- ``parse_jwks(doc, allowed)`` is pure: it turns a JWK Set into ``kid → PublicKey`` and skips anything doubtful.
- ``JwksCache`` fetches with a bounded timeout, keeps the last good keys when a fetch fails (never wipes them:
  PyJWT CVE-2026-48524), refreshes when older than ``ttl``, and rate-limits every fetch attempt to one per
  ``min_interval`` seconds (one per ``COLD_RETRY_SECONDS`` while it has no keys at all), so a flood of random
  ``kid``s cannot amplify into a flood of fetches. ``keys()`` raises ``JwksUnavailable`` only when it has never
  had keys: the handler turns that into a 503 (fail closed).
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
import urllib.request
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from storyverse_plugins.jwt_auth.tokens import ALGORITHMS_BY_KEY_TYPE, KID_PATTERN, PublicKey

log = logging.getLogger(__name__)

MAX_JWKS_BYTES = 64 * 1024
MAX_KEYS = 32
MIN_RSA_BITS = 2048
COLD_RETRY_SECONDS = 1.0


class JwksUnavailable(Exception):
    """No verification keys: the JWKS was never fetched successfully."""


class JwksFetchError(Exception):
    """One fetch failed (network, status, size or JSON)."""


# --- parsing (pure) -------------------------------------------------------------------------------------------


def _b64_int(value: Any) -> int:
    return int.from_bytes(_b64_bytes(value), "big")


def _b64_bytes(value: Any) -> bytes:
    if not isinstance(value, str) or not value:
        raise ValueError("not a base64url string")
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def _public_key(jwk: Mapping[str, Any]) -> Any:
    """A typed public key from the public members only (never d, p, q, k...)."""
    kty = jwk.get("kty")
    if kty == "RSA":
        key = rsa.RSAPublicNumbers(_b64_int(jwk.get("e")), _b64_int(jwk.get("n"))).public_key()
        if key.key_size < MIN_RSA_BITS:
            raise ValueError(f"RSA key of {key.key_size} bits")
        return key
    if kty == "EC":
        if jwk.get("crv") != "P-256":
            raise ValueError("EC curve must be P-256")
        return ec.EllipticCurvePublicNumbers(
            _b64_int(jwk.get("x")), _b64_int(jwk.get("y")), ec.SECP256R1()
        ).public_key()
    if kty == "OKP":
        if jwk.get("crv") != "Ed25519":
            raise ValueError("OKP curve must be Ed25519")
        return ed25519.Ed25519PublicKey.from_public_bytes(_b64_bytes(jwk.get("x")))
    raise ValueError(f"unsupported kty {str(kty)[:16]!r}")


def _key_algorithms(jwk: Mapping[str, Any], allowed: frozenset[str]) -> frozenset[str]:
    algs = ALGORITHMS_BY_KEY_TYPE.get(jwk.get("kty"), frozenset()) & allowed
    if "alg" in jwk:
        algs &= {jwk["alg"]}
    return algs


def _usable(jwk: Any) -> str | None:
    """Why this JWK is skipped, or None."""
    if not isinstance(jwk, dict):
        return "not an object"
    kid = jwk.get("kid")
    if not isinstance(kid, str) or not KID_PATTERN.match(kid):
        return "missing or ill-formed kid"
    if not isinstance(jwk.get("kty"), str) or not isinstance(jwk.get("alg", ""), str):
        return "kty or alg is not a string"
    if jwk.get("use", "sig") != "sig":
        return "use is not sig"
    ops = jwk.get("key_ops")
    if ops is not None and (not isinstance(ops, list) or "verify" not in ops):
        return "key_ops without verify"
    return None


def parse_jwks(doc: Any, allowed: frozenset[str]) -> tuple[dict[str, PublicKey], list[str]]:
    """(kid → key, reasons for skipped entries). Duplicate kids are dropped entirely (ambiguous)."""
    entries = doc.get("keys") if isinstance(doc, dict) else None
    if not isinstance(entries, list):
        raise JwksFetchError("JWKS has no keys array")
    keys: dict[str, PublicKey] = {}
    skipped: list[str] = []
    duplicates: set[str] = set()
    for jwk in entries[:MAX_KEYS]:
        why = _usable(jwk)
        algs = _key_algorithms(jwk, allowed) if why is None else frozenset()
        if why is None and not algs:
            why = "no allowed algorithm for this key"
        if why is None:
            try:
                key = PublicKey(jwk["kid"], jwk["kty"], _public_key(jwk), algs)
            except ValueError as exc:  # also binascii.Error and cryptography's ValueErrors
                why = f"invalid key material: {exc}"
        if why is not None:
            skipped.append(f"{str(jwk.get('kid') if isinstance(jwk, dict) else None)[:40]}: {why}")
            continue
        if key.kid in keys:
            duplicates.add(key.kid)
        keys[key.kid] = key
    for kid in duplicates:
        skipped.append(f"{kid}: duplicate kid")
        del keys[kid]
    return keys, skipped


# --- fetching --------------------------------------------------------------------------------------------------


def http_fetcher(url: str, timeout: float) -> Callable[[], bytes]:
    """GET ``url``: no proxies from the environment, no redirects, bounded time and size."""
    opener = urllib.request.OpenerDirector()
    for handler in (
        urllib.request.HTTPHandler,
        urllib.request.HTTPSHandler,  # verifies certificates with the default context
        urllib.request.HTTPDefaultErrorHandler,  # any non-2xx, redirects included, raises HTTPError
        urllib.request.HTTPErrorProcessor,
    ):
        opener.add_handler(handler())

    def fetch() -> bytes:
        # The opener has only http(s) handlers (no file:, ftp:, data:), and parse_config checks the scheme too.
        request = urllib.request.Request(url, headers={"Accept": "application/jwk-set+json, application/json"})  # noqa: S310
        try:
            with opener.open(request, timeout=timeout) as response:
                if response.status != 200:
                    raise JwksFetchError(f"status {response.status}")
                body = response.read(MAX_JWKS_BYTES + 1)
        except (OSError, ValueError) as exc:  # URLError, HTTPError, timeouts are OSErrors
            raise JwksFetchError(f"{type(exc).__name__}: {exc}") from exc
        if len(body) > MAX_JWKS_BYTES:
            raise JwksFetchError("JWKS larger than 64 KiB")
        return body

    return fetch


class JwksCache:
    """Thread-safe JWKS cache. ``clock`` is monotonic seconds (injectable for tests)."""

    def __init__(
        self,
        fetch: Callable[[], bytes],
        allowed: frozenset[str],
        *,
        ttl: float = 300.0,
        min_interval: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch, self._allowed, self._clock = fetch, allowed, clock
        self.ttl, self.min_interval = ttl, min_interval
        self._keys: Mapping[str, PublicKey] = MappingProxyType({})
        self._fetched_at: float | None = None  # last success
        self._attempted_at: float | None = None  # last attempt, successful or not
        self._lock = threading.Lock()
        self.fetches = 0
        self.failures = 0

    def keys(self) -> Mapping[str, PublicKey]:
        """The current keys; fetches when cold or stale (rate-limited). Raises JwksUnavailable when cold."""
        if self._fetched_at is not None and self._clock() - self._fetched_at < self.ttl:
            return self._keys
        self._refresh(self._interval())
        if self._fetched_at is None:
            raise JwksUnavailable("no JWKS fetched yet")
        return self._keys

    def refresh_for_unknown_kid(self, kid: str) -> bool:
        """Refetch because a token named an unknown kid; True if the kid is known afterwards."""
        if kid in self._keys:
            return True  # another request refetched meanwhile
        self._refresh(self._interval())
        return kid in self._keys

    def _interval(self) -> float:
        return min(self.min_interval, COLD_RETRY_SECONDS) if self._fetched_at is None else self.min_interval

    def _refresh(self, interval: float) -> None:
        # Cold: wait for the fetch in flight. Warm: never queue behind it, the current keys are still good.
        if not self._lock.acquire(blocking=self._fetched_at is None):
            return
        try:
            self._refresh_locked(interval)
        finally:
            self._lock.release()

    def _refresh_locked(self, interval: float) -> None:
        now = self._clock()
        if self._attempted_at is not None and now - self._attempted_at < interval:
            return
        self._attempted_at = now
        self.fetches += 1
        try:
            doc = json.loads(self._fetch())
            keys, skipped = parse_jwks(doc, self._allowed)
        except (JwksFetchError, ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError
            self.failures += 1
            log.error("sv-jwt: JWKS fetch failed, keeping %d last good keys: %s", len(self._keys), exc)
            return
        except Exception:  # a JWKS shape parse_jwks did not foresee: still keep the last good keys
            self.failures += 1
            log.exception("sv-jwt: JWKS could not be parsed, keeping %d last good keys", len(self._keys))
            return
        for why in skipped:
            log.warning("sv-jwt: JWKS entry skipped: %s", why)
        if not keys:
            self.failures += 1
            log.error("sv-jwt: JWKS has no usable key, keeping %d last good keys", len(self._keys))
            return
        self._keys = MappingProxyType(keys)
        self._fetched_at = now
