"""Users with roles, frontend clients, authorization codes, refresh tokens, audit.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("tenant_id", sa.Text, sa.ForeignKey("tenants.id"), nullable=False),
        sa.Column("email", sa.Text, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("password_hash", sa.Text, nullable=True),
        sa.Column("role", sa.Text, nullable=False),
        # Store, marketplace and category limits of the role; null: the whole tenant.
        sa.Column("limits", postgresql.JSONB, nullable=True),
        sa.Column("created_at", TS, nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", TS, nullable=False, server_default=sa.func.now()),
        sa.Column("disabled_at", TS, nullable=True),
    )
    # One account per e-mail address across tenants: the login form asks for no tenant.
    op.create_index("users_email", "users", [sa.text("lower(email)")], unique=True)
    op.create_index("users_tenant", "users", ["tenant_id"])

    # Frontends are public clients: no secret, PKCE, registered redirect URIs.
    op.add_column(
        "oauth_clients",
        sa.Column("redirect_uris", postgresql.ARRAY(sa.Text), nullable=False, server_default="{}"),
    )
    op.add_column(
        "oauth_clients",
        sa.Column("public", sa.Boolean, nullable=False, server_default=sa.false()),
    )
    op.alter_column("oauth_clients", "secret_hash", nullable=True)

    op.create_table(
        "authorization_codes",
        sa.Column("code_hash", sa.Text, primary_key=True),
        sa.Column("client_id", sa.Text, nullable=False),
        sa.Column("user_id", sa.Text, sa.ForeignKey("users.id"), nullable=False),
        sa.Column("tenant_id", sa.Text, nullable=False),
        sa.Column("redirect_uri", sa.Text, nullable=False),
        sa.Column("scope", sa.Text, nullable=False),
        sa.Column("code_challenge", sa.Text, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("used_at", TS, nullable=True),
    )
    op.create_table(
        "refresh_tokens",
        sa.Column("token_hash", sa.Text, primary_key=True),
        # Every token rotated from one sign-in shares a family; a reuse revokes it all.
        sa.Column("family_id", sa.Text, nullable=False),
        sa.Column("client_id", sa.Text, nullable=False),
        sa.Column("user_id", sa.Text, sa.ForeignKey("users.id"), nullable=False),
        sa.Column("tenant_id", sa.Text, nullable=False),
        sa.Column("scope", sa.Text, nullable=False),
        sa.Column("created_at", TS, nullable=False, server_default=sa.func.now()),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("used_at", TS, nullable=True),
        sa.Column("revoked_at", TS, nullable=True),
    )
    op.create_index("refresh_tokens_family", "refresh_tokens", ["family_id"])
    op.create_index("refresh_tokens_tenant", "refresh_tokens", ["tenant_id"])
    # Access tokens revoked before their expiry (RFC 7009), until they expire anyway.
    op.create_table(
        "revoked_access_tokens",
        sa.Column("jti", sa.Text, primary_key=True),
        sa.Column("tenant_id", sa.Text, nullable=True),
        sa.Column("expires_at", TS, nullable=False),
    )
    op.create_table(
        "audit_log",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("at", TS, nullable=False, server_default=sa.func.now()),
        sa.Column("tenant_id", sa.Text, nullable=True),
        sa.Column("actor", sa.Text, nullable=True),
        sa.Column("client_id", sa.Text, nullable=True),
        sa.Column("service", sa.Text, nullable=False),
        sa.Column("action", sa.Text, nullable=False),
        sa.Column("target", sa.Text, nullable=True),
        sa.Column("status", sa.Integer, nullable=True),
        sa.Column("ip", sa.Text, nullable=True),
        sa.Column("user_agent", sa.Text, nullable=True),
        sa.Column("trace_id", sa.Text, nullable=True),
        sa.Column("detail", postgresql.JSONB, nullable=True),
    )
    op.create_index("audit_log_tenant_at", "audit_log", ["tenant_id", "at"])


def downgrade() -> None:
    op.drop_table("audit_log")
    op.drop_table("revoked_access_tokens")
    op.drop_table("refresh_tokens")
    op.drop_table("authorization_codes")
    op.alter_column("oauth_clients", "secret_hash", nullable=False)
    op.drop_column("oauth_clients", "public")
    op.drop_column("oauth_clients", "redirect_uris")
    op.drop_table("users")
