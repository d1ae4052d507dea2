"""Settings from the environment (one place), read when the app is created, never at import."""

from __future__ import annotations

import os
from typing import Any


class SettingError(ValueError):
    """A setting has a value the service cannot use; the message names the variable."""


def _int(name: str, default: int, minimum: int = 0) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise SettingError(f"{name} must be at least {minimum}, got {value}")
    return value


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def _log_level() -> str:
    value = os.environ.get("LOG_LEVEL", "INFO").strip().upper()
    if value not in LOG_LEVELS:
        raise SettingError(f"LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, got {value!r}")
    return value


def from_environment() -> dict[str, Any]:
    """DATABASE_URL and REDIS_URL are shared with the auth service's deployment (same PostgreSQL database: the
    service owns `usage_daily` and reads `families`/`accounts`); JWKS_URL, ISSUER and AUDIENCE verify tokens."""
    return {
        "SQLALCHEMY_DATABASE_URI": os.environ.get(
            "DATABASE_URL", "postgresql+psycopg2://postgres@127.0.0.1/storyverse"
        ),
        "SQLALCHEMY_ENGINE_OPTIONS": {"pool_pre_ping": True, "pool_size": 5, "max_overflow": 5},
        "REDIS_URL": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
        "JWKS_URL": os.environ.get("JWKS_URL", "http://127.0.0.1:9000/.well-known/jwks.json"),
        "ISSUER": os.environ.get("ISSUER", "http://localhost:8000"),
        "AUDIENCE": os.environ.get("AUDIENCE", "storyverse-api"),
        "JWT_ALGORITHMS": ["RS256", "ES256", "EdDSA"],
        # seconds between usage syncs (and occasion sweeps); 0 = only `sv-ratelimit sync` (tests)
        "USAGE_SYNC_INTERVAL": _int("USAGE_SYNC_INTERVAL", 60),
        "LOG_LEVEL": _log_level(),  # the JSON log lines (logs.py); DEBUG adds the idle usage-sync passes
        "TESTING": False,
    }
