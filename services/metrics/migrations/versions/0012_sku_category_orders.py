"""Orders by SKU keep the category each order holds the SKU under.

With the category in its key, ``daily_sku_orders`` answers orders by SKU and category
at once, and by SKU within some categories: an order holds a SKU under one category
(``order_skus.category``), so summing a SKU's categories still counts each order once.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-26
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

KEY = "tenant_id, local_date, platform, store_id, marketplace, sku"

UPGRADE = [
    "ALTER TABLE daily_sku_orders DROP CONSTRAINT daily_sku_orders_pkey",
    "ALTER TABLE daily_sku_orders ADD COLUMN category text NOT NULL DEFAULT ''",
    "DELETE FROM daily_sku_orders",
    f"""
    INSERT INTO daily_sku_orders ({KEY}, category, orders, orders_all)
    SELECT tenant_id, order_date, platform, store_id, marketplace, sku, category,
           count(*) FILTER (WHERE live), count(*)
    FROM order_skus
    GROUP BY tenant_id, order_date, platform, store_id, marketplace, sku, category
    """,
    f"ALTER TABLE daily_sku_orders ADD PRIMARY KEY ({KEY}, category)",
    # Orders of several SKUs or categories at once are counted from here, distinct.
    "CREATE INDEX order_skus_by_date ON order_skus (tenant_id, order_date)",
]

DOWNGRADE = [
    "DROP INDEX order_skus_by_date",
    "ALTER TABLE daily_sku_orders DROP CONSTRAINT daily_sku_orders_pkey",
    f"""
    CREATE TEMP TABLE sku_orders_summed AS
    SELECT {KEY}, sum(orders)::int AS orders, sum(orders_all)::int AS orders_all
    FROM daily_sku_orders GROUP BY {KEY}
    """,
    "DELETE FROM daily_sku_orders",
    "ALTER TABLE daily_sku_orders DROP COLUMN category",
    "INSERT INTO daily_sku_orders SELECT * FROM sku_orders_summed",
    f"ALTER TABLE daily_sku_orders ADD PRIMARY KEY ({KEY})",
    "DROP TABLE sku_orders_summed",
]


def upgrade() -> None:
    for statement in UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    for statement in DOWNGRADE:
        op.execute(statement)
