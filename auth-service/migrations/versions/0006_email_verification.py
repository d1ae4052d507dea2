"""email verification: accounts.email_verified_at and single-use verification links (issue 20)

Revision ID: 0006_email_verification
Revises: 0005_billing
Create Date: 2026-12-07

"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0006_email_verification"
down_revision = "0005_billing"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("accounts", sa.Column("email_verified_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "email_verifications",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("token_hash"),
    )
    op.create_index("ix_email_verifications_account_id", "email_verifications", ["account_id"])


def downgrade():
    op.drop_index("ix_email_verifications_account_id", table_name="email_verifications")
    op.drop_table("email_verifications")
    op.drop_column("accounts", "email_verified_at")
