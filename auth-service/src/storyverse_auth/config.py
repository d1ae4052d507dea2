"""Configuration: one typed settings object read from the environment (pydantic-settings), and the Flask config
classes built from its defaults.

``Settings`` declares every setting the environment can give, with its type, default and description (the table in
auth-service/README.md is generated from it: ``python scripts/gen_auth_settings.py``). ``create_app`` reads the
environment once, when the app is made (never at import): a value that does not parse or is out of range raises
``ConfigError`` with one line naming the variable, which wsgi.py prints before exiting non-zero. Flask keys keep their
historical names (``SQLALCHEMY_DATABASE_URI`` for ``DATABASE_URL``...), and the mapping passed to
``create_app(config)`` overrides everything.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

_DEFAULT_MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"

# A fixed development key so a fresh checkout runs; production refuses to start with it.
DEV_KEY_ENCRYPTION_KEY = "ZGV2LW9ubHkta2V5LWVuY3J5cHRpb24ta2V5LTMyYnk="  # base64("dev-only-key-encryption-key-32by")
DAY = 24 * 3600


def _f(default: Any, description: str, **constraints: Any) -> Any:
    return Field(default, description=description, **constraints)


class Settings(BaseSettings):
    """Every environment variable the auth service reads. The variable name is the field name."""

    model_config = SettingsConfigDict(case_sensitive=True, extra="ignore", validate_default=True)

    AUTH_ENV: Literal["development", "testing", "production"] = _f(
        "development", "Config class; production refuses unsafe settings at start (docs/operations.md §8)"
    )
    DATABASE_URL: str = _f("postgresql+psycopg2://postgres@127.0.0.1:5432/storyverse", "PostgreSQL SQLAlchemy URL")
    TEST_DATABASE_URL: str = _f(
        "postgresql+psycopg2://postgres@127.0.0.1:5432/storyverse_auth_test",
        "Database of the test suite (testing only)",
    )
    DB_POOL_PRE_PING: bool = _f(False, "Ping pooled connections before use (one round trip per checkout)")
    DB_POOL_RECYCLE: int = _f(300, "Seconds after which pooled connections are replaced", ge=0)
    REDIS_URL: str = _f(
        "redis://127.0.0.1:6379/0",
        "Redis URL (sessions, revocations, throttles): redis[s]://, redis[s]+sentinel://…/<master>,"
        " redis[s]+cluster://… (README: Sessions in Redis)",
    )
    TEST_REDIS_URL: str = _f("redis://127.0.0.1:6379/9", "Redis of the test suite (testing only)")
    KEY_ENCRYPTION_KEY: str = Field(
        DEV_KEY_ENCRYPTION_KEY,
        description="base64 of >= 32 random bytes; encrypts the signing keys",
        min_length=43,
        repr=False,
    )
    TOKEN_HMAC_SECRET: str | None = Field(
        None, description="MAC key for refresh and reset tokens; derived from KEY_ENCRYPTION_KEY when unset", repr=False
    )
    ISSUER: str = _f("http://localhost:8000", "Token issuer (`iss`): the public base URL of the API")
    AUDIENCE: str = _f("storyverse-api", "Token audience (`aud`)")
    JWT_ALGORITHM: Literal["RS256", "ES256", "EdDSA"] = _f(
        "ES256",
        "Algorithm of the keys that sign access tokens (ID tokens: always RS256; existing keys keep theirs; "
        "docs/architecture.md §4)",
    )
    ACCESS_TOKEN_TTL: int = _f(600, "Access-token lifetime (s)", gt=0)
    JWKS_MAX_AGE: int = _f(300, "Cache-Control max-age of the JWKS (s)", ge=0)
    KEY_CACHE_SECONDS: int = _f(30, "How long a process caches the signing keys (s)", ge=0)
    SESSION_IDLE_TTL: int = _f(14 * DAY, "A session unused this long ends (s)", gt=0)
    SESSION_ABSOLUTE_TTL: int = _f(60 * DAY, "A session ends this long after login whatever its use (s)", gt=0)
    REFRESH_GRACE_SECONDS: int = _f(30, "A rotated refresh token is still accepted this long (s); capped at 30", ge=0)
    REFRESH_FAST_PATH: bool = _f(
        True, "Answer the common POST /api/auth/refresh below Flask's dispatch (auth/fast_refresh.py); false: all Flask"
    )
    SESSION_CLAIMS_MAX_AGE: int = _f(
        3600,
        "A session's cached token claims are read again from PostgreSQL after this long (s); service-made changes"
        " invalidate them at once (README: Sessions in Redis)",
        gt=0,
    )
    REVOCATION_REPLICA_WAIT_MS: int = _f(
        500,
        "A revocation waits this long (ms) for one replica to acknowledge it (WAIT 1) where the Redis shard has"
        " replicas; 0 = do not wait",
        ge=0,
        le=10000,
    )
    REVOCATION_LEGACY_KEYS: bool = _f(
        True,
        "Also write the pre-hash-tag revocation keys (sv:revoked:jti:<jti>, sv:revoked:sid:<sid>) for gateways of the"
        " previous release, and honour them; turn off once none runs (README: Rolling upgrade)",
    )
    DEVICE_POLL_INTERVAL: int = _f(5, "RFC 8628 polling interval (s)", gt=0)
    DEVICE_CODE_TTL: int = _f(600, "Device-code lifetime (s)", gt=0)
    DEVICE_VERIFICATION_URI: str = _f(
        "http://localhost:8000/parent/device",
        "Page where the parent enters the user code (the auth service serves it: /parent/device, via the gateway)",
    )
    RESET_TOKEN_TTL: int = _f(30 * 60, "Password-reset token lifetime (s)", gt=0)
    RESET_URL: str = _f(
        "http://localhost:3000/reset-password?token={token}", "Password-reset link; `{token}` is replaced"
    )
    FAMILY_INVITE_TTL: int = _f(7 * DAY, "Co-parent invitation lifetime (s)", gt=0)
    FAMILY_INVITE_URL: str = _f(
        "http://localhost:3000/join-family?token={token}", "Co-parent invitation link; `{token}` is replaced"
    )
    PASSWORD_MIN_LENGTH: int = _f(15, "Shortest password (NIST 800-63B; no composition rules)", ge=8)
    PASSWORD_MAX_LENGTH: int = _f(256, "Longest password", gt=0)
    ARGON2_TIME_COST: int = _f(2, "argon2id iterations (OWASP: 2)", ge=1)
    ARGON2_MEMORY_COST: int = _f(19456, "argon2id memory in KiB (OWASP: 19456)", ge=8)
    ARGON2_PARALLELISM: int = _f(1, "argon2id lanes", ge=1)
    THROTTLE_ACCOUNT_IP_THRESHOLD: int = _f(5, "Failures per (account, IP) before back-off starts", gt=0)
    THROTTLE_IP_THRESHOLD: int = _f(50, "Failures per IP before back-off starts", gt=0)
    THROTTLE_BASE_SECONDS: int = _f(2, "First back-off (s); doubles per failure", gt=0)
    THROTTLE_MAX_SECONDS: int = _f(15 * 60, "Longest back-off (s)", gt=0)
    THROTTLE_WINDOW_SECONDS: int = _f(12 * 3600, "Failure counters forget after this (s)", gt=0)
    ENUMERATION_FLOOR_SECONDS: float = _f(0.1, "register and forgot never answer faster (s)", ge=0)
    MAIL_BACKEND: Literal["outbox", "smtp"] = _f("outbox", "`outbox` (in memory; refused in production) or `smtp`")
    MAIL_SENDER: str = _f("StoryVerse <no-reply@storyverse.local>", "From address (a verified SES identity)")
    SMTP_HOST: str = _f("localhost", "SMTP relay (SES: email-smtp.<region>.amazonaws.com)")
    SMTP_PORT: int = _f(587, "SMTP port (587 STARTTLS, 465 implicit TLS)", gt=0, le=65535)
    SMTP_SECURITY: Literal["starttls", "tls", "none"] = _f(
        "starttls", "`starttls`, `tls` or `none` (local sinks only; refused in production); certificates are verified"
    )
    SMTP_USERNAME: str = _f("", "SMTP login after TLS (SES SMTP credentials); empty = no login")
    SMTP_PASSWORD: str = Field("", description="SMTP password", repr=False)
    SMTP_TIMEOUT: float = _f(10.0, "SMTP connect/read timeout (s)", gt=0)
    SMTP_CA_FILE: str = _f("", "CA bundle of the relay's certificate; empty = the system CAs")
    MIGRATIONS_DIR: str = _f(str(_DEFAULT_MIGRATIONS), "Alembic migrations directory")
    LOG_LEVEL: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = _f("INFO", "Level of the JSON logs")
    TRUST_PROXY_HOPS: int = _f(1, "X-Forwarded-For hops trusted for the client IP (0 when not behind Kong)", ge=0)
    API_KEY_PLANS: dict[str, tuple[str, ...]] | None = _f(
        None, 'JSON: API-key plan -> roles allowed to own it, e.g. `{"family": ["parent"], "partner-basic": ["admin"]}`'
    )
    API_KEY_TOKEN_TTL: int = _f(300, "Lifetime of a token exchanged for an API key (s)", gt=0)
    PROMETHEUS_MULTIPROC_DIR: str | None = _f(
        None, "prometheus_client multiprocess directory (gunicorn); unset = one registry per app"
    )

    @field_validator("REFRESH_GRACE_SECONDS")
    @classmethod
    def _cap_grace(cls, value: int) -> int:
        return min(value, 30)

    def flask_config(self, names: set[str] | None = None) -> dict[str, Any]:
        """Flask config keys for these settings (all, or only ``names``)."""
        names = set(type(self).model_fields) if names is None else names
        out: dict[str, Any] = {}
        for name in names - {"AUTH_ENV", "TEST_DATABASE_URL", "TEST_REDIS_URL", "PROMETHEUS_MULTIPROC_DIR"}:
            if name == "DATABASE_URL":
                out["SQLALCHEMY_DATABASE_URI"] = self.DATABASE_URL
            elif name in ("DB_POOL_PRE_PING", "DB_POOL_RECYCLE"):
                out["SQLALCHEMY_ENGINE_OPTIONS"] = {
                    "pool_pre_ping": self.DB_POOL_PRE_PING,
                    "pool_recycle": self.DB_POOL_RECYCLE,
                }
            else:
                out[name] = getattr(self, name)
        return out


class ConfigError(RuntimeError):
    """A setting that the service must not start with; the message is one line naming the variable(s)."""


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """The settings from ``environ`` (default: the process environment); ConfigError names each bad variable."""
    env = os.environ if environ is None else environ
    try:
        if environ is None:
            return Settings()
        return Settings(**{name: env[name] for name in Settings.model_fields if name in env})
    except ValidationError as exc:
        problems = [
            f"{'.'.join(str(p) for p in err['loc'])}={_shown(err)}: {err['msg']}"
            for err in exc.errors(include_url=False)
        ]
        raise ConfigError("invalid setting: " + "; ".join(problems)) from None
    except SettingsError as exc:  # a JSON-typed variable (API_KEY_PLANS) that is not JSON
        field = str(exc).split('"')[1] if '"' in str(exc) else "?"
        raise ConfigError(f"invalid setting: {field} is not valid JSON") from None


def _shown(err: Mapping[str, Any]) -> str:
    name = str(err["loc"][0]) if err["loc"] else ""
    return "<hidden>" if name in ("KEY_ENCRYPTION_KEY", "TOKEN_HMAC_SECRET", "SMTP_PASSWORD") else repr(err["input"])


_DEFAULTS = Settings.model_construct().flask_config()  # the declared defaults, without reading the environment


class Config:
    """The declared defaults (the environment is applied by ``create_app``), plus fixed apiflask settings."""

    MAX_CONTENT_LENGTH = 64 * 1024
    TITLE = "StoryVerse Auth Service"
    VERSION = "0.1.0"
    SPEC_FORMAT = "json"
    AUTO_404_RESPONSE = False
    TESTING = False


for _key, _value in _DEFAULTS.items():
    setattr(Config, _key, _value)


class DevConfig(Config):
    DEBUG = False


class TestConfig(Config):
    """The suite's own database and Redis DB and cheap argon2; the environment cannot move these (a stray
    REDIS_URL must never point the suite's flushes at a real store)."""

    TESTING = True
    # Read here as well (not only in create_app) because the suite's helpers create and flush these stores.
    SQLALCHEMY_DATABASE_URI = os.environ.get("TEST_DATABASE_URL", Settings.model_fields["TEST_DATABASE_URL"].default)
    REDIS_URL = os.environ.get("TEST_REDIS_URL", Settings.model_fields["TEST_REDIS_URL"].default)
    ARGON2_TIME_COST = 1
    ARGON2_MEMORY_COST = 8
    ARGON2_PARALLELISM = 1
    ENUMERATION_FLOOR_SECONDS = 0.0
    PINNED = frozenset({"SQLALCHEMY_DATABASE_URI", "REDIS_URL", "ARGON2_TIME_COST", "ARGON2_MEMORY_COST"})
    PINNED |= {"ARGON2_PARALLELISM", "ENUMERATION_FLOOR_SECONDS"}


class ProdConfig(Config):
    """Production: ``create_app`` refuses to start on any of ``production_problems``."""


CONFIGS = {"development": DevConfig, "testing": TestConfig, "production": ProdConfig}


def config_class(name: str | None = None) -> type[Config]:
    return CONFIGS[name or load_settings().AUTH_ENV]


def environment_config(cls: type[Config]) -> dict[str, Any]:
    """The Flask config the environment sets (only the variables present), over ``cls``'s defaults."""
    settings = load_settings()
    out = settings.flask_config(set(settings.model_fields_set))
    if cls is TestConfig:
        out = {k: v for k, v in out.items() if k not in TestConfig.PINNED}
        out["SQLALCHEMY_DATABASE_URI"], out["REDIS_URL"] = settings.TEST_DATABASE_URL, settings.TEST_REDIS_URL
    return out


PUBLIC_URL_SETTINGS = ("RESET_URL", "FAMILY_INVITE_URL", "DEVICE_VERIFICATION_URI")
_LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "0.0.0.0"})


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


def settings_table() -> str:
    """The Markdown table of every setting (auth-service/README.md carries it between the settings markers)."""
    rows = ["| Variable | Type | Default | Description |", "|---|---|---|---|"]
    for name, field in Settings.model_fields.items():
        kind = str(field.annotation).replace("typing.", "").replace("<class '", "").replace("'>", "")
        default = field.default
        shown = "dev key" if name == "KEY_ENCRYPTION_KEY" else ("" if default is None else str(default))
        if name == "MIGRATIONS_DIR":
            shown = "auth-service/migrations"
        rows.append(f"| `{name}` | `{kind}` | {f'`{shown}`' if shown else '—'} | {field.description} |")
    return "\n".join(rows) + "\n"
