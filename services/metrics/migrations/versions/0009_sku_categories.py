"""Each SKU's category, as its latest order line names it, so measures kept by SKU
(refunds, fees, ads, traffic) can be grouped and filtered by category.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-26
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE sku_categories (
            tenant_id text NOT NULL,
            sku text NOT NULL,
            category text NOT NULL,
            seen_at timestamptz NOT NULL,
            PRIMARY KEY (tenant_id, sku)
        )
        """
    )
    op.execute(
        """
        INSERT INTO sku_categories
        SELECT DISTINCT ON (tenant_id, sku) tenant_id, sku, category, purchased_at
        FROM order_lines WHERE category <> ''
        ORDER BY tenant_id, sku, purchased_at DESC
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE sku_categories")
