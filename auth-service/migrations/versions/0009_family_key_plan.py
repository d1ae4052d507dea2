"""api keys: parent-owned `partner-basic` keys become `family` keys (metered by the family's own plan)

Parents could give their own keys the `partner-basic` plan (100 stories a day on the family's counter, whatever the
family's plan). Partner plans are now assigned by administrators only: keys a parent gave itself are moved to
`family`. Admin-owned keys and `partner-premium` keys (only ever assigned by an administrator) are left alone.

Revision ID: 0009_family_key_plan
Revises: 0008_privacy
Create Date: 2026-12-07

"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0009_family_key_plan"
down_revision = "0008_privacy"
branch_labels = None
depends_on = None


def upgrade():
    op.execute(
        sa.text(
            "UPDATE api_keys SET plan = 'family' WHERE plan = 'partner-basic' "
            "AND owner_id IN (SELECT id FROM accounts WHERE role = 'parent')"
        )
    )


def downgrade():
    # Nothing to undo: turning the keys back into self-assigned partner keys would reopen the quota bypass, and the
    # previous code meters an unknown `family` tier as basic (storyverse_contracts.tiers.DEFAULT_TIER), never more.
    pass
