"""Configuration classes, read from the environment (microblog style).

Every setting can be overridden by the mapping passed to ``create_app(config)``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

_DEFAULT_MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"

# A fixed development key so a fresh checkout runs; ProdConfig refuses to start without a real one.
DEV_KEY_ENCRYPTION_KEY = "ZGV2LW9ubHkta2V5LWVuY3J5cHRpb24ta2V5LTMyYnk="  # base64("dev-only-key-encryption-key-32by")


def _int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


class Config:
    """Defaults shared by every environment; values come from the environment when set."""

    SQLALCHEMY_DATABASE_URI = os.environ.get("DATABASE_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/storyverse")
    # pre-ping costs one round trip per request; recycling pooled connections is the cheaper default.
    SQLALCHEMY_ENGINE_OPTIONS = {
        "pool_pre_ping": os.environ.get("DB_POOL_PRE_PING", "0") == "1",
        "pool_recycle": _int("DB_POOL_RECYCLE", 300),
    }
    REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    KEY_ENCRYPTION_KEY = os.environ.get("KEY_ENCRYPTION_KEY", DEV_KEY_ENCRYPTION_KEY)
    # Secret for refresh-token MACs and reset-token HMACs; derived from KEY_ENCRYPTION_KEY when unset.
    TOKEN_HMAC_SECRET = os.environ.get("TOKEN_HMAC_SECRET")
    ISSUER = os.environ.get("ISSUER", "http://localhost:8000")
    AUDIENCE = os.environ.get("AUDIENCE", "storyverse-api")
    JWT_ALGORITHM = os.environ.get("JWT_ALGORITHM", "RS256")  # RS256 | ES256 | EdDSA
    ACCESS_TOKEN_TTL = _int("ACCESS_TOKEN_TTL", 600)
    JWKS_MAX_AGE = _int("JWKS_MAX_AGE", 300)
    KEY_CACHE_SECONDS = _int("KEY_CACHE_SECONDS", 30)
    SESSION_IDLE_TTL = _int("SESSION_IDLE_TTL", 14 * 24 * 3600)
    SESSION_ABSOLUTE_TTL = _int("SESSION_ABSOLUTE_TTL", 60 * 24 * 3600)
    REFRESH_GRACE_SECONDS = min(_int("REFRESH_GRACE_SECONDS", 30), 30)
    DEVICE_POLL_INTERVAL = _int("DEVICE_POLL_INTERVAL", 5)  # RFC 8628 §3.2 default
    RESET_TOKEN_TTL = _int("RESET_TOKEN_TTL", 30 * 60)
    RESET_URL = os.environ.get("RESET_URL", "http://localhost:3000/reset-password?token={token}")
    PASSWORD_MIN_LENGTH = _int("PASSWORD_MIN_LENGTH", 15)
    PASSWORD_MAX_LENGTH = _int("PASSWORD_MAX_LENGTH", 256)
    # argon2id, OWASP Password Storage Cheat Sheet: m=19 MiB, t=2, p=1.
    ARGON2_TIME_COST = _int("ARGON2_TIME_COST", 2)
    ARGON2_MEMORY_COST = _int("ARGON2_MEMORY_COST", 19456)
    ARGON2_PARALLELISM = _int("ARGON2_PARALLELISM", 1)
    # Brute-force defence: back-off starts after this many failures, doubles, capped; counters forget after a window.
    THROTTLE_ACCOUNT_IP_THRESHOLD = _int("THROTTLE_ACCOUNT_IP_THRESHOLD", 5)
    THROTTLE_IP_THRESHOLD = _int("THROTTLE_IP_THRESHOLD", 50)
    THROTTLE_BASE_SECONDS = _int("THROTTLE_BASE_SECONDS", 2)
    THROTTLE_MAX_SECONDS = _int("THROTTLE_MAX_SECONDS", 15 * 60)
    THROTTLE_WINDOW_SECONDS = _int("THROTTLE_WINDOW_SECONDS", 12 * 3600)
    # register and forgot take at least this long whatever the outcome (hides the account-exists branch).
    ENUMERATION_FLOOR_SECONDS = float(os.environ.get("ENUMERATION_FLOOR_SECONDS", "0.1"))
    MAIL_BACKEND = os.environ.get("MAIL_BACKEND", "outbox")  # outbox | smtp (production refuses outbox)
    MAIL_SENDER = os.environ.get("MAIL_SENDER", "StoryVerse <no-reply@storyverse.local>")
    SMTP_HOST = os.environ.get("SMTP_HOST", "localhost")
    SMTP_PORT = _int("SMTP_PORT", 587)
    SMTP_SECURITY = os.environ.get("SMTP_SECURITY", "starttls")  # starttls | tls | none (production refuses none)
    SMTP_USERNAME = os.environ.get("SMTP_USERNAME", "")
    SMTP_PASSWORD = os.environ.get("SMTP_PASSWORD", "")
    SMTP_TIMEOUT = _int("SMTP_TIMEOUT", 10)
    SMTP_CA_FILE = os.environ.get("SMTP_CA_FILE", "")  # CA bundle for the SMTP server; empty = system CAs
    # Links sent to parents: production refuses non-https or loopback hosts (they would point at the parent's own PC).
    FAMILY_INVITE_URL = os.environ.get("FAMILY_INVITE_URL", "http://localhost:3000/join-family?token={token}")
    DEVICE_VERIFICATION_URI = os.environ.get("DEVICE_VERIFICATION_URI", "http://localhost:3000/device")
    MAX_CONTENT_LENGTH = 64 * 1024
    MIGRATIONS_DIR = os.environ.get("MIGRATIONS_DIR", str(_DEFAULT_MIGRATIONS))
    LOG_LEVEL = os.environ.get("LOG_LEVEL", "INFO")
    TRUST_PROXY_HOPS = _int("TRUST_PROXY_HOPS", 1)
    # apiflask / OpenAPI
    TITLE = "StoryVerse Auth Service"
    VERSION = "0.1.0"
    SPEC_FORMAT = "json"
    AUTO_404_RESPONSE = False
    TESTING = False


class DevConfig(Config):
    DEBUG = False


class TestConfig(Config):
    TESTING = True
    SQLALCHEMY_DATABASE_URI = os.environ.get(
        "TEST_DATABASE_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/storyverse_auth_test"
    )
    REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/9")
    # Cheap argon2 so the suite stays fast; ProdConfig keeps OWASP's parameters.
    ARGON2_TIME_COST = 1
    ARGON2_MEMORY_COST = 8
    ARGON2_PARALLELISM = 1
    ENUMERATION_FLOOR_SECONDS = 0.0


class ProdConfig(Config):
    """Production: ``create_app`` refuses to start on any of ``production_problems``."""


PUBLIC_URL_SETTINGS = ("RESET_URL", "FAMILY_INVITE_URL", "DEVICE_VERIFICATION_URI")
_LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "0.0.0.0"})


class ConfigError(RuntimeError):
    """A setting that the service must not start with; the message is one line naming the variable(s)."""


def production_problems(config: Mapping[str, Any]) -> list[str]:
    """What makes ``config`` unfit for production, one phrase per setting (empty when it is fit)."""
    problems = []
    if config["KEY_ENCRYPTION_KEY"] == DEV_KEY_ENCRYPTION_KEY:
        problems.append("KEY_ENCRYPTION_KEY must be set (it is the development key)")
    if config["MAIL_BACKEND"] != "smtp":
        problems.append(f"MAIL_BACKEND={config['MAIL_BACKEND']} keeps mail in memory; set MAIL_BACKEND=smtp")
    elif config.get("SMTP_SECURITY", "starttls") not in ("starttls", "tls"):
        problems.append("SMTP_SECURITY must be starttls or tls (mail carries reset links)")
    for name in PUBLIC_URL_SETTINGS:
        url = urlsplit(str(config.get(name, "")))
        host = (url.hostname or "").lower()
        if url.scheme != "https" or not host or host in _LOOPBACK_HOSTS or host.endswith(".localhost"):
            problems.append(f"{name} must be a public https URL, not {config.get(name)!r}")
    return problems


def check_production(config: Mapping[str, Any]) -> None:
    problems = production_problems(config)
    if problems:
        raise ConfigError("refusing to start (AUTH_ENV=production): " + "; ".join(problems))


CONFIGS = {"development": DevConfig, "testing": TestConfig, "production": ProdConfig}


def config_class(name: str | None = None) -> type[Config]:
    return CONFIGS[name or os.environ.get("AUTH_ENV", "development")]
