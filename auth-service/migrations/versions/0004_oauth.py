"""oauth: OAuth 2.1 / OIDC provider clients, authorization codes and grants (refresh-token families)

Revision ID: 0004_oauth
Revises: 0003_usage_apikeys
Create Date: 2026-11-28

"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0004_oauth"
down_revision = "0003_usage_apikeys"
branch_labels = None
depends_on = None


def _tz() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade():
    _create_oauth_clients()
    _create_oauth_grants()
    _create_oauth_authorization_codes()


def _create_oauth_clients():
    op.create_table(
        "oauth_clients",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("client_name", sa.String(length=100), nullable=False),
        sa.Column("client_type", sa.String(length=16), nullable=False),
        sa.Column("secret_hash", sa.String(length=64), nullable=True),
        sa.Column("redirect_uris", sa.JSON(), nullable=False),
        sa.Column("grant_types", sa.JSON(), nullable=False),
        sa.Column("scopes", sa.JSON(), nullable=False),
        sa.Column("created_at", _tz(), nullable=False),
        sa.Column("secret_rotated_at", _tz(), nullable=True),
        sa.Column("disabled_at", _tz(), nullable=True),
        sa.CheckConstraint("client_type IN ('public', 'confidential')", name="ck_oauth_clients_type"),
        sa.CheckConstraint(
            "(client_type = 'public') = (secret_hash IS NULL)", name="ck_oauth_clients_secret_iff_confidential"
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("client_id"),
    )


def _create_oauth_grants():
    op.create_table(
        "oauth_grants",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("client_pk", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("scope", sa.String(length=512), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("refresh_token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", _tz(), nullable=False),
        sa.Column("last_used_at", _tz(), nullable=False),
        sa.Column("rotated_at", _tz(), nullable=True),
        sa.Column("expires_at", _tz(), nullable=False),
        sa.Column("revoked_at", _tz(), nullable=True),
        sa.Column("revoke_reason", sa.String(length=32), nullable=True),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["client_pk"], ["oauth_clients.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_oauth_grants_account_id", "oauth_grants", ["account_id"])
    op.create_index("ix_oauth_grants_client_pk", "oauth_grants", ["client_pk"])


def _create_oauth_authorization_codes():
    op.create_table(
        "oauth_authorization_codes",
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("client_pk", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("redirect_uri", sa.String(length=512), nullable=False),
        sa.Column("scope", sa.String(length=512), nullable=False),
        sa.Column("nonce", sa.String(length=256), nullable=True),
        sa.Column("code_challenge", sa.String(length=128), nullable=False),
        sa.Column("code_challenge_method", sa.String(length=8), nullable=False),
        sa.Column("auth_time", sa.Integer(), nullable=False),
        sa.Column("created_at", _tz(), nullable=False),
        sa.Column("expires_at", _tz(), nullable=False),
        sa.Column("used_at", _tz(), nullable=True),
        sa.Column("grant_id", sa.Uuid(), nullable=True),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["client_pk"], ["oauth_clients.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["grant_id"], ["oauth_grants.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("code_hash"),
    )
    op.create_index("ix_oauth_authorization_codes_account_id", "oauth_authorization_codes", ["account_id"])
    op.create_index("ix_oauth_authorization_codes_client_pk", "oauth_authorization_codes", ["client_pk"])
    op.create_index("ix_oauth_authorization_codes_expires_at", "oauth_authorization_codes", ["expires_at"])


def downgrade():
    op.drop_table("oauth_authorization_codes")
    op.drop_table("oauth_grants")
    op.drop_table("oauth_clients")
