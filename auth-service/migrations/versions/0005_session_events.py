"""session_events: append-only audit of session events (sessions themselves move to Redis, issue 17)

The ``sessions`` table stays for the move: live rows are moved to Redis by ``flask sessions move-to-redis`` or on
their next refresh, and marked ``revoke_reason = 'moved_to_redis'``; a later release drops it.

Revision ID: 0005_session_events
Revises: 0004_oauth
Create Date: 2026-12-07

"""

import sqlalchemy as sa
from alembic import op

revision = "0005_session_events"
down_revision = "0004_oauth"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "session_events",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("event", sa.String(length=32), nullable=False),
        sa.Column("session_id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=True),
        sa.Column("reason", sa.String(length=32), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_session_events_at", "session_events", ["at"])
    op.create_index("ix_session_events_session_id", "session_events", ["session_id"])
    op.create_index("ix_session_events_account_id", "session_events", ["account_id"])


def downgrade():
    op.drop_table("session_events")
