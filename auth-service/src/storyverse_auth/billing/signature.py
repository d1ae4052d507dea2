"""Webhook signatures: pure functions, no Flask, no clock of their own (the caller passes ``now``).

The provider-neutral scheme (the shape Stripe, Paddle and most providers use): the header is
``Billing-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>``. Several ``v1`` entries may
be sent (a provider rotating its secret), and several secrets may be configured (we rotate ours); one match is
enough. The timestamp must be within ``tolerance`` seconds of now: with the event-id ledger this makes a captured
request useless once the window has passed and harmless (a duplicate) inside it.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

MAX_HEADER = 1024


@dataclass(frozen=True)
class Verdict:
    ok: bool
    reason: str = ""  # "malformed" | "stale" | "mismatch" when not ok


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The header value for ``body`` (used by tests and by anyone writing a provider adapter)."""
    return f"t={timestamp},v1={_mac(secret, timestamp, body)}"


def _mac(secret: str, timestamp: int, body: bytes) -> str:
    return hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()


def _parse(header: str) -> tuple[int, list[str]] | None:
    if not header or len(header) > MAX_HEADER or not header.isascii():  # compare_digest raises on non-ASCII
        return None
    timestamp, macs = None, []
    for part in header.split(","):
        name, sep, value = part.strip().partition("=")
        if not sep:
            return None
        if name == "t" and value.isdigit() and len(value) <= 12:
            timestamp = int(value)
        elif name == "v1" and len(value) == 64:
            macs.append(value.lower())
    if timestamp is None or not macs:
        return None
    return timestamp, macs


def verify(header: str, body: bytes, secrets: list[str], now: float, tolerance: int) -> Verdict:
    parsed = _parse(header)
    if parsed is None:
        return Verdict(False, "malformed")
    timestamp, macs = parsed
    if abs(now - timestamp) > tolerance:
        return Verdict(False, "stale")
    expected = [_mac(secret, timestamp, body) for secret in secrets if secret]
    if any(hmac.compare_digest(e, m) for e in expected for m in macs):
        return Verdict(True)
    return Verdict(False, "mismatch")
