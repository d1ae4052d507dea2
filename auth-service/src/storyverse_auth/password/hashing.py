"""argon2id hashing (OWASP parameters, transparent rehash) and the NIST SP 800-63B password rules."""

from __future__ import annotations

from functools import cache
from importlib import resources

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from flask import Flask, current_app

_EXT = "sv_password_hasher"


class Passwords:
    """Holds the configured hasher and a dummy hash verified for unknown accounts (equal timing)."""

    def __init__(self, time_cost: int, memory_cost: int, parallelism: int) -> None:
        self.hasher = PasswordHasher(
            time_cost=time_cost,
            memory_cost=memory_cost,
            parallelism=parallelism,
            hash_len=32,
            salt_len=16,
            type=Type.ID,
        )
        self.dummy_hash = self.hasher.hash("storyverse-dummy-password-for-timing")

    def hash(self, password: str) -> str:
        return self.hasher.hash(password)

    def verify(self, stored_hash: str | None, password: str) -> bool:
        """Verify; with no stored hash, burn the same time on the dummy hash and fail."""
        try:
            ok = self.hasher.verify(stored_hash or self.dummy_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False
        return ok and stored_hash is not None

    def needs_rehash(self, stored_hash: str) -> bool:
        return self.hasher.check_needs_rehash(stored_hash)


def init_app(app: Flask) -> None:
    app.extensions[_EXT] = Passwords(
        app.config["ARGON2_TIME_COST"], app.config["ARGON2_MEMORY_COST"], app.config["ARGON2_PARALLELISM"]
    )


def passwords() -> Passwords:
    return current_app.extensions[_EXT]


@cache
def common_passwords() -> frozenset[str]:
    text = resources.files("storyverse_auth").joinpath("data/common-passwords.txt").read_text(encoding="utf-8")
    return frozenset(line.strip().lower() for line in text.splitlines() if line.strip() and not line.startswith("#"))


def policy_violation(password: str, email: str | None = None) -> str | None:
    """Return why ``password`` is unacceptable, or None. Length and blocklist only: no composition rules."""
    min_len, max_len = current_app.config["PASSWORD_MIN_LENGTH"], current_app.config["PASSWORD_MAX_LENGTH"]
    if len(password) < min_len:
        return f"The password must be at least {min_len} characters long."
    if len(password) > max_len:
        return f"The password must be at most {max_len} characters long."
    lowered = password.lower()
    if lowered in common_passwords() or len(set(lowered)) <= 2:
        return "This password is too common or appears in breach corpora; choose another."
    if email and lowered in {email.lower(), email.split("@", 1)[0].lower()}:
        return "The password must not be the e-mail address."
    return None
