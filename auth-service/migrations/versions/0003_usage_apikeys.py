"""usage and API keys: durable daily usage for billing (usage_daily), API keys for high-volume access (api_keys)

Revision ID: 0003_usage_apikeys
Revises: 0002_families
Create Date: 2026-11-28

"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0003_usage_apikeys"
down_revision = "0002_families"
branch_labels = None
depends_on = None


def upgrade():
    # One row per sv-quota daily counter: (family, scope family|user|child, account id or "", family-local day).
    # Rows are upserted with GREATEST(), so a re-run of the sync never double counts and never goes backwards.
    op.create_table(
        "usage_daily",
        sa.Column("family_id", sa.String(length=64), nullable=False),
        sa.Column("scope", sa.String(length=8), nullable=False),
        sa.Column("subject", sa.String(length=64), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("stories_used", sa.Integer(), nullable=False),
        sa.Column("grants", sa.Integer(), nullable=False),
        sa.Column("requests", sa.JSON(), nullable=True),
        sa.Column("synced_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("scope IN ('family', 'user', 'child')", name="ck_usage_daily_scope"),
        sa.PrimaryKeyConstraint("family_id", "scope", "subject", "day"),
    )
    op.create_index("ix_usage_daily_day", "usage_daily", ["day"], unique=False)

    op.create_table(
        "api_keys",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("owner_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("secret_hash", sa.String(length=64), nullable=False),
        sa.Column("scopes", sa.JSON(), nullable=False),
        sa.Column("plan", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["owner_id"], ["accounts.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_api_keys_owner_id", "api_keys", ["owner_id"], unique=False)


def downgrade():
    op.drop_index("ix_api_keys_owner_id", table_name="api_keys")
    op.drop_table("api_keys")
    op.drop_index("ix_usage_daily_day", table_name="usage_daily")
    op.drop_table("usage_daily")
