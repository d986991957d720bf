"""Agency grants: which stores and scopes a seller lets an agency tenant reach.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "grants",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("tenant_id", sa.Text, sa.ForeignKey("tenants.id"), nullable=False),
        sa.Column("agency_tenant_id", sa.Text, sa.ForeignKey("tenants.id"), nullable=False),
        sa.Column("stores", postgresql.ARRAY(sa.Text), nullable=False),
        sa.Column("scopes", postgresql.ARRAY(sa.Text), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_by", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
    )
    # Every request of an agency into a seller looks its grant up by this pair.
    op.create_index("grants_agency_tenant", "grants", ["agency_tenant_id", "tenant_id"])
    op.create_index("grants_tenant", "grants", ["tenant_id"])


def downgrade() -> None:
    op.drop_table("grants")
