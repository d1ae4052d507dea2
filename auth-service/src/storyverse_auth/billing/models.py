"""The family's subscription as the billing provider last reported it, and the ledger of webhook event ids."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, DateTime, ForeignKey, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db

STATUSES = ("active", "canceled")


class Subscription(db.Model):
    """One row per family that ever had a paid plan. ``families.tier`` stays the value tokens read."""

    __tablename__ = "billing_subscriptions"
    __table_args__ = (CheckConstraint("status IN ('active', 'canceled')", name="ck_billing_subscriptions_status"),)

    family_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("families.id", ondelete="CASCADE"), primary_key=True)
    provider_subscription_id: Mapped[str] = mapped_column(String(128))
    plan: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    # The provider's `created` time of the last event applied: an older event arriving late changes nothing.
    last_event_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class BillingEvent(db.Model):
    """Every webhook event id ever accepted (replay protection: a second delivery is a no-op)."""

    __tablename__ = "billing_events"

    event_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    event_type: Mapped[str] = mapped_column(String(64))
    family_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)  # no FK: the ledger outlives a deleted family
    outcome: Mapped[str] = mapped_column(String(16))
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
