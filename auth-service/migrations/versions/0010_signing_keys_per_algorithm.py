"""signing keys: one active and one next key per algorithm (access tokens in JWT_ALGORITHM, ID tokens in RS256)

OIDC Core 1.0 §15.1 requires RS256 ID tokens whatever JWT_ALGORITHM is (docs/architecture.md §4), so the service
keeps an active and a next key for each algorithm it signs with: the unique index on `state` becomes one on
(`algorithm`, `state`). `signed_access_tokens` records which keys signed access tokens (the discovery document lists
their algorithms; an RS256 key may sign only ID tokens): every key that was ever active did before this revision.

Downgrade restores the one-active-one-next index only when the data fits it, and otherwise refuses (nothing is
changed): the previous code signs everything with the single active key.

Revision ID: 0010_signing_keys_per_algorithm
Revises: 0009_family_key_plan
Create Date: 2026-12-14

"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0010_signing_keys_per_algorithm"
down_revision = "0009_family_key_plan"
branch_labels = None
depends_on = None

LIVE = "state IN ('active', 'next')"
CROWDED = (
    "SELECT state, string_agg(algorithm, ', ' ORDER BY algorithm) FROM signing_keys "
    "WHERE state IN ('active', 'next') GROUP BY state HAVING count(*) > 1"
)
# Kept published one access-token lifetime (600 s by default) plus 60 s, as a rotation does.
RETIRE = (
    "UPDATE signing_keys SET state = 'retired', retired_at = now(), publish_until = now() + interval '11 minutes' "
    "WHERE state IN ('active', 'next') AND algorithm <> 'ES256';  -- ES256: the previous release's algorithm"
)


def upgrade():
    op.add_column(
        "signing_keys",
        sa.Column("signed_access_tokens", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.execute(sa.text("UPDATE signing_keys SET signed_access_tokens = true WHERE activated_at IS NOT NULL"))
    op.drop_index("uq_signing_keys_one_active", table_name="signing_keys", postgresql_where=sa.text(LIVE))
    op.create_index(
        "uq_signing_keys_active_next",
        "signing_keys",
        ["algorithm", "state"],
        unique=True,
        postgresql_where=sa.text(LIVE),
    )


def downgrade():
    crowded = op.get_bind().execute(sa.text(CROWDED)).all()
    if crowded:
        found = "; ".join(f"{state}: {algorithms}" for state, algorithms in crowded)
        raise RuntimeError(
            "cannot downgrade below 0010_signing_keys_per_algorithm: the previous schema allows one active and one "
            f"next signing key in all, and there are several ({found}). Nothing was changed. Keep the keys of the "
            "algorithm the previous release signs with (its JWT_ALGORITHM) and retire the others first: " + RETIRE
        )
    op.drop_index("uq_signing_keys_active_next", table_name="signing_keys", postgresql_where=sa.text(LIVE))
    op.create_index(
        "uq_signing_keys_one_active", "signing_keys", ["state"], unique=True, postgresql_where=sa.text(LIVE)
    )
    op.drop_column("signing_keys", "signed_access_tokens")
