"""Typed SQLAlchemy 2 models. PostgreSQL is the system of record; Redis only mirrors revocations."""

from __future__ import annotations

import secrets
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    LargeBinary,
    String,
    Uuid,
    false,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship
from storyverse_contracts import identity, tiers

from .extensions import db

ROLES = identity.ROLES
TIERS = tiers.FAMILY_TIERS
KEY_STATES = ("next", "active", "retired")
DEVICE_STATES = ("pending", "approved", "denied", "consumed")
# Crockford-style alphabet without I, L, O, U: family codes are read aloud and typed by children.
FAMILY_CODE_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
FAMILY_CODE_LENGTH = 10  # 50 bits; guessing is also throttled per (code, username) and per IP


def new_family_code() -> str:
    return "".join(secrets.choice(FAMILY_CODE_ALPHABET) for _ in range(FAMILY_CODE_LENGTH))


def _tz() -> Any:
    return DateTime(timezone=True)


class Family(db.Model):
    __tablename__ = "families"
    __table_args__ = (CheckConstraint("tier IN ('basic', 'premium')", name="ck_families_tier"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(100))
    time_zone: Mapped[str] = mapped_column(String(64), default="UTC")
    tier: Mapped[str] = mapped_column(String(16), default=tiers.DEFAULT_TIER)
    created_at: Mapped[datetime] = mapped_column(_tz())
    # Shown to parents; children sign in with it + username + PIN (stored upper-case, no separators).
    family_code: Mapped[str] = mapped_column(String(16), unique=True, default=new_family_code)

    members: Mapped[list[Account]] = relationship(back_populates="family")


class Account(db.Model):
    __tablename__ = "accounts"
    __table_args__ = (
        CheckConstraint("role IN ('parent', 'child', 'admin')", name="ck_accounts_role"),
        # Usernames are unique within a family only (children of different families may share one).
        Index(
            "uq_accounts_family_username",
            "family_id",
            "username",
            unique=True,
            postgresql_where="username IS NOT NULL",
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    family_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("families.id", ondelete="CASCADE"), index=True)
    # Stored lower-cased; children may have no e-mail (docs/architecture.md §4).
    email: Mapped[str | None] = mapped_column(String(254), unique=True)
    password_hash: Mapped[str | None] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16), default=identity.PARENT)
    display_name: Mapped[str] = mapped_column(String(100))
    age_band: Mapped[str | None] = mapped_column(String(16))
    content_rating: Mapped[str | None] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(_tz())
    password_changed_at: Mapped[datetime | None] = mapped_column(_tz())
    # Child profiles (docs/architecture.md §4): no e-mail; username + PIN; the birth year gives the age band.
    username: Mapped[str | None] = mapped_column(String(32))
    birth_year: Mapped[int | None] = mapped_column(Integer)
    pin_hash: Mapped[str | None] = mapped_column(String(255))
    # Parental controls (the parent's settings; tokens apply the age-band and tier caps, see children/controls.py).
    max_content_rating: Mapped[str | None] = mapped_column(String(16))
    daily_story_limit: Mapped[int | None] = mapped_column(Integer)
    allowed_hours: Mapped[str | None] = mapped_column(String(16))
    features: Mapped[list[str] | None] = mapped_column(JSON)
    # A child profile is inactive (cannot sign in) until a parent records consent (ledger: Consent).
    consented_at: Mapped[datetime | None] = mapped_column(_tz())
    # Set when the parent opens the mailed verification link (verification/); gates children and consent.
    email_verified_at: Mapped[datetime | None] = mapped_column(_tz())

    family: Mapped[Family] = relationship(back_populates="members")


class SigningKey(db.Model):
    """A JWT signing key. The private key is AES-GCM encrypted with KEY_ENCRYPTION_KEY (AAD = kid)."""

    __tablename__ = "signing_keys"
    __table_args__ = (
        CheckConstraint("state IN ('next', 'active', 'retired')", name="ck_signing_keys_state"),
        # At most one active and one next key per algorithm (tokens/signing.py: access tokens and ID tokens).
        Index(
            "uq_signing_keys_active_next",
            "algorithm",
            "state",
            unique=True,
            postgresql_where="state IN ('active', 'next')",
        ),
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
    # Set the first time the key signs an access token (an RS256 key may sign only ID tokens): the discovery document
    # lists the algorithms of the published keys that did (tokens/signing.py access_token_algorithms).
    signed_access_tokens: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class Session(db.Model):
    """A session as PostgreSQL kept it before sessions moved to Redis (sessions/store.py, issue 17): read
    only to move live rows (``revoke_reason = 'moved_to_redis'``); a later release drops the table."""

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


class SessionEvent(db.Model):
    """Append-only audit of session events (audit.py). No foreign key: the trail outlives the account."""

    __tablename__ = "session_events"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    at: Mapped[datetime] = mapped_column(_tz(), index=True)
    event: Mapped[str] = mapped_column(String(32))
    session_id: Mapped[uuid.UUID] = mapped_column(Uuid, index=True)
    account_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, index=True)
    reason: Mapped[str | None] = mapped_column(String(32))


class PasswordResetToken(db.Model):
    """A single-use reset token, stored as HMAC-SHA256(secret, token)."""

    __tablename__ = "password_reset_tokens"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(_tz())
    expires_at: Mapped[datetime] = mapped_column(_tz())
    used_at: Mapped[datetime | None] = mapped_column(_tz())


class Consent(db.Model):
    """The consent ledger (COPPA §312.5): who consented for which child, when, to which policy and scopes."""

    __tablename__ = "consents"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    child_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    giver_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("accounts.id", ondelete="SET NULL"))
    policy_version: Mapped[str] = mapped_column(String(32))
    agreed: Mapped[list[str]] = mapped_column(JSON)
    method: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(_tz())


class FamilyInvitation(db.Model):
    """A single-use co-parent invitation, stored as HMAC-SHA256(secret, token)."""

    __tablename__ = "family_invitations"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    family_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("families.id", ondelete="CASCADE"), index=True)
    email: Mapped[str] = mapped_column(String(254))
    invited_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("accounts.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(_tz())
    expires_at: Mapped[datetime] = mapped_column(_tz())
    used_at: Mapped[datetime | None] = mapped_column(_tz())


class DeviceAuthorization(db.Model):
    """An RFC 8628 device authorization: the device polls with device_code; a parent approves the user_code."""

    __tablename__ = "device_authorizations"
    __table_args__ = (
        CheckConstraint(
            "status IN ('pending', 'approved', 'denied', 'consumed')", name="ck_device_authorizations_status"
        ),
    )

    device_code_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_code: Mapped[str] = mapped_column(String(16), unique=True)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    client_name: Mapped[str | None] = mapped_column(String(64))
    child_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    decided_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("accounts.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(_tz())
    expires_at: Mapped[datetime] = mapped_column(_tz(), index=True)
    decided_at: Mapped[datetime | None] = mapped_column(_tz())
    interval: Mapped[int] = mapped_column(Integer, default=5)
    next_poll_at: Mapped[datetime] = mapped_column(_tz())
