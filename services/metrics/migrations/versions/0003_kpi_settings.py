"""Each tenant's metric settings (口径): what GMV includes, the reporting currency.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "kpi_settings",
        sa.Column("tenant_id", sa.Text, primary_key=True),
        sa.Column("gmv_includes_tax", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("gmv_includes_shipping", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("reporting_currency", sa.String(3), nullable=True),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
    )


def downgrade() -> None:
    op.drop_table("kpi_settings")
