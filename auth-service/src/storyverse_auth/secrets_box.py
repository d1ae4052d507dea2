"""Encryption at rest for private keys (AES-256-GCM) and the HMAC secret for opaque tokens.

Both derive from KEY_ENCRYPTION_KEY (32 random bytes, standard or url-safe base64) via HKDF with distinct labels,
unless TOKEN_HMAC_SECRET is set explicitly.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
from functools import lru_cache

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import current_app

_NONCE = 12


class KeyEncryptionError(Exception):
    """The key encryption key is missing, malformed, or does not decrypt a stored key."""


def _decode_kek(value: str) -> bytes:
    try:
        raw = base64.urlsafe_b64decode(value.replace("+", "-").replace("/", "_") + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError) as exc:
        raise KeyEncryptionError("KEY_ENCRYPTION_KEY is not base64") from exc
    if len(raw) < 32:
        raise KeyEncryptionError("KEY_ENCRYPTION_KEY must encode at least 32 bytes")
    return raw


def _derive(label: bytes) -> bytes:
    return _derive_cached(current_app.config["KEY_ENCRYPTION_KEY"] or "", label)


@lru_cache(maxsize=16)
def _derive_cached(kek_text: str, label: bytes) -> bytes:
    kek = _decode_kek(kek_text)
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=label).derive(kek)


def encrypt(plaintext: bytes, aad: bytes) -> bytes:
    nonce = os.urandom(_NONCE)
    return nonce + AESGCM(_derive(b"storyverse-auth signing-key-wrap v1")).encrypt(nonce, plaintext, aad)


def decrypt(blob: bytes, aad: bytes) -> bytes:
    try:
        return AESGCM(_derive(b"storyverse-auth signing-key-wrap v1")).decrypt(blob[:_NONCE], blob[_NONCE:], aad)
    except InvalidTag as exc:
        raise KeyEncryptionError("stored key does not decrypt with KEY_ENCRYPTION_KEY") from exc


def token_mac(message: str) -> str:
    """HMAC-SHA256 hex of ``message`` under the token secret."""
    secret = current_app.config.get("TOKEN_HMAC_SECRET")
    key = secret.encode() if secret else _derive(b"storyverse-auth token-mac v1")
    return hmac.new(key, message.encode(), hashlib.sha256).hexdigest()


def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()
