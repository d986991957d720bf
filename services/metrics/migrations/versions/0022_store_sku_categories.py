"""Each store's category of a SKU: the one its newest order line in that store names.

A SKU's measures (ads, traffic, fees, stock) take the category its newest order line
names. That line may be another store's: an agency granted one store, grouping by
category, saw a category name only another store's line carried. A question narrowed
to stores or marketplaces (every question of such a caller is) now takes each row's
category from its own store's lines, kept here.

Revision ID: 0022
Revises: 0021
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0022"
down_revision: str | None = "0021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "store_sku_categories",
        sa.Column("tenant_id", sa.Text, nullable=False),
        sa.Column("platform", sa.Text, nullable=False),
        sa.Column("store_id", sa.Text, nullable=False),
        sa.Column("marketplace", sa.Text, nullable=False),
        sa.Column("sku", sa.Text, nullable=False),
        sa.Column("category", sa.Text, nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "platform", "store_id", "marketplace", "sku"),
    )
    op.execute(
        """
        INSERT INTO store_sku_categories
        SELECT DISTINCT ON (tenant_id, platform, store_id, marketplace, sku)
               tenant_id, platform, store_id, marketplace, sku, category, purchased_at
        FROM order_lines WHERE category <> ''
        ORDER BY tenant_id, platform, store_id, marketplace, sku, purchased_at DESC
        """
    )


def downgrade() -> None:
    op.drop_table("store_sku_categories")
