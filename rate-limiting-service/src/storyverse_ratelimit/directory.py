"""Read-only view of the two auth-service tables the usage view needs (same PostgreSQL database): a family's tier and
time zone, and its children's names and own daily limits. The service never writes them; the columns used here are
the whole contract (tests/rate_limiting_service/test_rls_plans.py checks them against the auth models)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table, Uuid, select
from storyverse_plans import plan_for

from .extensions import db

_meta = MetaData()  # not the service's metadata: init-db never creates these
families = Table(
    "families", _meta, Column("id", Uuid, primary_key=True), Column("tier", String), Column("time_zone", String)
)
accounts = Table(
    "accounts",
    _meta,
    Column("id", Uuid, primary_key=True),
    Column("family_id", Uuid),
    Column("role", String),
    Column("display_name", String),
    Column("username", String),
    Column("daily_story_limit", Integer),
    Column("created_at", DateTime(timezone=True)),
)


@dataclass(frozen=True)
class Family:
    id: str
    tier: str
    time_zone: str


@dataclass(frozen=True)
class Child:
    id: str
    display_name: str
    username: str | None
    daily_story_limit: int  # effective: the parent's setting capped by the plan (as the child's token claim)


def family(family_id: uuid.UUID | str) -> Family | None:
    row = db.session.execute(
        select(families.c.id, families.c.tier, families.c.time_zone).where(families.c.id == _uuid(family_id))
    ).first()
    return None if row is None else Family(str(row.id), row.tier, row.time_zone or "UTC")


def children(fam: Family) -> list[Child]:
    plan_daily = plan_for(fam.tier).daily
    stmt = (
        select(accounts.c.id, accounts.c.display_name, accounts.c.username, accounts.c.daily_story_limit)
        .where(accounts.c.family_id == _uuid(fam.id), accounts.c.role == "child")
        .order_by(accounts.c.created_at, accounts.c.id)
    )
    out = []
    for row in db.session.execute(stmt):
        own = plan_daily if row.daily_story_limit is None else min(row.daily_story_limit, plan_daily)
        out.append(Child(str(row.id), row.display_name, row.username, own))
    return out


def account(account_id: uuid.UUID | str) -> tuple[str, str] | None:
    """(role, family id) of an account, or None."""
    row = db.session.execute(
        select(accounts.c.role, accounts.c.family_id).where(accounts.c.id == _uuid(account_id))
    ).first()
    return None if row is None else (row.role, str(row.family_id))


def tiers(family_ids: list[str]) -> dict[str, str]:
    """Family id -> tier for these families (ids that are not UUIDs or not found are left out)."""
    ids = []
    for fid in family_ids:
        try:
            ids.append(uuid.UUID(fid))
        except ValueError:
            continue
    if not ids:
        return {}
    rows = db.session.execute(select(families.c.id, families.c.tier).where(families.c.id.in_(ids)))
    return {str(row.id): row.tier for row in rows}


def _uuid(value: uuid.UUID | str) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
