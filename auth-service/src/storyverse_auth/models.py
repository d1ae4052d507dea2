"""Typed SQLAlchemy 2 models. PostgreSQL is the system of record; Redis only mirrors revocations."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, CheckConstraint, DateTime, ForeignKey, Index, Integer, LargeBinary, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .extensions import db

ROLES = ("parent", "child", "admin")
TIERS = ("basic", "premium")
KEY_STATES = ("next", "active", "retired")


def _tz() -> Any:
    return DateTime(timezone=True)


class Family(db.Model):
    __tablename__ = "families"
    __table_args__ = (CheckConstraint("tier IN ('basic', 'premium')", name="ck_families_tier"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(100))
    time_zone: Mapped[str] = mapped_column(String(64), default="UTC")
    tier: Mapped[str] = mapped_column(String(16), default="basic")
    created_at: Mapped[datetime] = mapped_column(_tz())

    members: Mapped[list[Account]] = relationship(back_populates="family")


class Account(db.Model):
    __tablename__ = "accounts"
    __table_args__ = (CheckConstraint("role IN ('parent', 'child', 'admin')", name="ck_accounts_role"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    family_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("families.id", ondelete="CASCADE"), index=True)
    # Stored lower-cased; children may have no e-mail (DESIGN §4).
    email: Mapped[str | None] = mapped_column(String(254), unique=True)
    password_hash: Mapped[str | None] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16), default="parent")
    display_name: Mapped[str] = mapped_column(String(100))
    age_band: Mapped[str | None] = mapped_column(String(16))
    content_rating: Mapped[str | None] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(_tz())
    password_changed_at: Mapped[datetime | None] = mapped_column(_tz())

    family: Mapped[Family] = relationship(back_populates="members")


class SigningKey(db.Model):
    """A JWT signing key. The private key is AES-GCM encrypted with KEY_ENCRYPTION_KEY (AAD = kid)."""

    __tablename__ = "signing_keys"
    __table_args__ = (
        CheckConstraint("state IN ('next', 'active', 'retired')", name="ck_signing_keys_state"),
        # At most one active and one next key at any time.
        Index("uq_signing_keys_one_active", "state", unique=True, postgresql_where="state IN ('active', 'next')"),
    )

    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    algorithm: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16))
    public_jwk: Mapped[dict[str, Any]] = mapped_column(JSON)
    private_key_encrypted: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(_tz())
    activated_at: Mapped[datetime | None] = mapped_column(_tz())
    retired_at: Mapped[datetime | None] = mapped_column(_tz())
    # A retired key stays in the JWKS until every token it signed has expired.
    publish_until: Mapped[datetime | None] = mapped_column(_tz())


class Session(db.Model):
    """One login on one device. Its refresh token is derived from (id, generation) and stored only as a hash."""

    __tablename__ = "sessions"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    generation: Mapped[int] = mapped_column(Integer, default=0)
    refresh_token_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(_tz())
    last_used_at: Mapped[datetime] = mapped_column(_tz())
    rotated_at: Mapped[datetime | None] = mapped_column(_tz())
    expires_at: Mapped[datetime] = mapped_column(_tz())
    revoked_at: Mapped[datetime | None] = mapped_column(_tz())
    revoke_reason: Mapped[str | None] = mapped_column(String(32))
    user_agent: Mapped[str | None] = mapped_column(String(256))
    ip: Mapped[str | None] = mapped_column(String(64))


class PasswordResetToken(db.Model):
    """A single-use reset token, stored as HMAC-SHA256(secret, token)."""

    __tablename__ = "password_reset_tokens"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(_tz())
    expires_at: Mapped[datetime] = mapped_column(_tz())
    used_at: Mapped[datetime | None] = mapped_column(_tz())
