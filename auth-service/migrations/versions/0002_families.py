"""families: family codes, child profiles and controls, consent ledger, co-parent invitations, device grants

Revision ID: 0002_families
Revises: 0001_auth_core
Create Date: 2026-11-27

"""

import secrets

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0002_families"
down_revision = "0001_auth_core"
branch_labels = None
depends_on = None

# Frozen copies (a migration must not import the app): see models.FAMILY_CODE_ALPHABET / FAMILY_CODE_LENGTH.
_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_CODE_LENGTH = 10


def _code() -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(_CODE_LENGTH))


def upgrade():
    op.add_column("families", sa.Column("family_code", sa.String(length=16), nullable=True))
    conn = op.get_bind()
    families = sa.table("families", sa.column("id", sa.Uuid()), sa.column("family_code", sa.String()))
    for (family_id,) in conn.execute(sa.select(families.c.id)).all():
        conn.execute(families.update().where(families.c.id == family_id).values(family_code=_code()))
    op.alter_column("families", "family_code", nullable=False)
    op.create_unique_constraint("families_family_code_key", "families", ["family_code"])
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("username", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("birth_year", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("pin_hash", sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column("max_content_rating", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("daily_story_limit", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("allowed_hours", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("features", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("consented_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index(
            "uq_accounts_family_username",
            ["family_id", "username"],
            unique=True,
            postgresql_where="username IS NOT NULL",
        )
    _create_consents()
    _create_family_invitations()
    _create_device_authorizations()


def _create_consents():
    op.create_table(
        "consents",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("child_id", sa.Uuid(), nullable=False),
        sa.Column("giver_id", sa.Uuid(), nullable=True),
        sa.Column("policy_version", sa.String(length=32), nullable=False),
        sa.Column("agreed", sa.JSON(), nullable=False),
        sa.Column("method", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["child_id"], ["accounts.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["giver_id"], ["accounts.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_consents_child_id", "consents", ["child_id"], unique=False)


def _create_family_invitations():
    op.create_table(
        "family_invitations",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("family_id", sa.Uuid(), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("invited_by", sa.Uuid(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["family_id"], ["families.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["invited_by"], ["accounts.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("token_hash"),
    )
    op.create_index("ix_family_invitations_family_id", "family_invitations", ["family_id"], unique=False)


def _create_device_authorizations():
    op.create_table(
        "device_authorizations",
        sa.Column("device_code_hash", sa.String(length=64), nullable=False),
        sa.Column("user_code", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("client_name", sa.String(length=64), nullable=True),
        sa.Column("child_id", sa.Uuid(), nullable=True),
        sa.Column("decided_by", sa.Uuid(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("interval", sa.Integer(), nullable=False),
        sa.Column("next_poll_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "status IN ('pending', 'approved', 'denied', 'consumed')", name="ck_device_authorizations_status"
        ),
        sa.ForeignKeyConstraint(["child_id"], ["accounts.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["decided_by"], ["accounts.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("device_code_hash"),
        sa.UniqueConstraint("user_code"),
    )
    op.create_index("ix_device_authorizations_expires_at", "device_authorizations", ["expires_at"], unique=False)


def downgrade():
    op.drop_index("ix_device_authorizations_expires_at", table_name="device_authorizations")
    op.drop_table("device_authorizations")
    op.drop_index("ix_family_invitations_family_id", table_name="family_invitations")
    op.drop_table("family_invitations")
    op.drop_index("ix_consents_child_id", table_name="consents")
    op.drop_table("consents")
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.drop_index("uq_accounts_family_username", postgresql_where="username IS NOT NULL")
        for column in (
            "consented_at",
            "features",
            "allowed_hours",
            "daily_story_limit",
            "max_content_rating",
            "pin_hash",
            "birth_year",
            "username",
        ):
            batch_op.drop_column(column)
    op.drop_constraint("families_family_code_key", "families", type_="unique")
    op.drop_column("families", "family_code")
