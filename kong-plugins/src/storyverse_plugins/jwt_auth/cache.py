"""Verified-token cache: repeat requests with the same token skip parsing and the signature check.

A bounded LRU keyed by the SHA-256 digest of the token (the token itself is never kept). An entry lives exactly as
long as the token would pass ``tokens.verify`` (until ``exp + leeway``), and is only trusted while the key that
signed it is still in the JWKS. It caches verification only: the caller still checks the denylist (jti and sid)
on every hit.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

_sha256 = hashlib.sha256


def token_digest(token: str) -> bytes:
    """SHA-256 of the token's UTF-8 bytes (one-to-one, surrogates passed through: distinct strings never share a
    digest input, and nothing raises; the gate only hashes ASCII tokens)."""
    return _sha256(token.encode("utf-8", "surrogatepass")).digest()


@dataclass(frozen=True)
class CachedToken:
    """What a verified token means for this request; ``valid_until`` is ``exp + leeway`` (epoch seconds)."""

    identity: Mapping[str, Any]
    upstream_headers: Mapping[str, str]
    jti: str
    kid: str
    valid_until: float
    sid: str | None = None  # the session: revoking it revokes the token (denylist)
    allow: Any = None  # the Allow of a request without spoofed headers, built once (gate.Gate._entry)


class TokenCache:
    """Thread-safe LRU of ``digest → CachedToken``; ``max_entries == 0`` disables caching."""

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[bytes, CachedToken] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, digest: bytes, now: float, known_kids: Mapping[str, Any]) -> CachedToken | None:
        # Reads take no lock: each OrderedDict operation is atomic under the GIL, and writers (put, an expired
        # entry's removal) hold the lock among themselves. The counters are statistics only.
        entry = self._entries.get(digest)
        if entry is None:
            self.misses += 1
            return None
        if now >= entry.valid_until or entry.kid not in known_kids:  # expiry is checked on every hit
            with self._lock:
                self._entries.pop(digest, None)
            self.misses += 1
            return None
        try:
            self._entries.move_to_end(digest)
        except KeyError:  # evicted meanwhile: still verified and unexpired, so still good for this request
            pass
        self.hits += 1
        return entry

    def put(self, digest: bytes, entry: CachedToken) -> None:
        if self.max_entries <= 0:
            return
        with self._lock:
            self._entries[digest] = entry
            self._entries.move_to_end(digest)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
