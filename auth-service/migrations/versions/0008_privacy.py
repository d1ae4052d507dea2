"""privacy: pending parent account deletions (issue 20)

Revision ID: 0008_privacy
Revises: 0007_mfa
Create Date: 2026-12-07

"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0008_privacy"
down_revision = "0007_mfa"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "account_deletions",
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("purge_after", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("account_id"),
    )
    op.create_index("ix_account_deletions_purge_after", "account_deletions", ["purge_after"])


def downgrade():
    op.drop_index("ix_account_deletions_purge_after", table_name="account_deletions")
    op.drop_table("account_deletions")
