"""The service's table: durable daily usage for billing, one row per sv-quota daily counter (``sync``).

The table's DDL is the one the auth service's migration 0003 created before the service existed, so existing
databases keep their history; ``sv-ratelimit init-db`` creates it where it is missing.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, CheckConstraint, Date, DateTime, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from .extensions import db

SCOPES = ("family", "user", "child")


class UsageDaily(db.Model):
    """Stories consumed on one family-local day by one quota subject.

    ``scope`` says which counter the row mirrors: ``family`` (the family's shared pool, ``subject`` empty), ``child``
    (a child's own limit, ``subject`` = its account id) or ``user`` (per-user quotas). ``family_id`` is the
    counter's hash-tag id (a family UUID; empty for a user without family). ``grants`` includes occasion stories.
    """

    __tablename__ = "usage_daily"
    __table_args__ = (CheckConstraint("scope IN ('family', 'user', 'child')", name="ck_usage_daily_scope"),)

    family_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    scope: Mapped[str] = mapped_column(String(8), primary_key=True)
    subject: Mapped[str] = mapped_column(String(64), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True, index=True)
    stories_used: Mapped[int] = mapped_column(Integer, default=0)
    grants: Mapped[int] = mapped_column(Integer, default=0)
    # Requests per endpoint ({"POST /v1/stories": 12, ...}) when the gateway counts them; NULL otherwise.
    requests: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    synced_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
