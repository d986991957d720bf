"""Orders by SKU and category count the orders cancelled whole.

CONTRACT §4: an order is cancelled when every one of its lines is; a partly cancelled
order is not. By SKU or category, ``orders_all - orders`` counted the orders whose
lines *of that group* were all cancelled, so an order with one cancelled SKU beside a
shipped one was a cancelled order under that SKU. ``order_skus`` now knows whether
the whole order is live, and the per-SKU and per-category counts keep ``cancelled``.

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-27
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The counted cell c of a rollup row d: its day, store and category.
_CELL = (
    "d.tenant_id = c.tenant_id AND d.local_date = c.local_date AND d.platform = c.platform "
    "AND d.store_id = c.store_id AND d.marketplace = c.marketplace AND d.category = c.category"
)

UPGRADE = [
    "ALTER TABLE order_skus ADD COLUMN order_live boolean NOT NULL DEFAULT true",
    """
    UPDATE order_skus s SET order_live = false FROM orders o
    WHERE o.tenant_id = s.tenant_id AND o.platform = s.platform
      AND o.store_id = s.store_id AND o.order_id = s.order_id AND o.live_lines = 0
    """,
    "ALTER TABLE daily_sku_orders ADD COLUMN cancelled integer NOT NULL DEFAULT 0",
    f"""
    UPDATE daily_sku_orders d SET cancelled = c.orders FROM (
        SELECT tenant_id, order_date AS local_date, platform, store_id, marketplace, sku,
               category, count(*) AS orders
        FROM order_skus WHERE NOT order_live
        GROUP BY tenant_id, order_date, platform, store_id, marketplace, sku, category
    ) c
    WHERE {_CELL} AND d.sku = c.sku
    """,
    "ALTER TABLE daily_category_orders ADD COLUMN cancelled integer NOT NULL DEFAULT 0",
    f"""
    UPDATE daily_category_orders d SET cancelled = c.orders FROM (
        SELECT tenant_id, order_date AS local_date, platform, store_id, marketplace, category,
               count(DISTINCT order_id) AS orders
        FROM order_skus WHERE NOT order_live
        GROUP BY tenant_id, order_date, platform, store_id, marketplace, category
    ) c
    WHERE {_CELL}
    """,
]

DOWNGRADE = [
    "ALTER TABLE daily_category_orders DROP COLUMN cancelled",
    "ALTER TABLE daily_sku_orders DROP COLUMN cancelled",
    "ALTER TABLE order_skus DROP COLUMN order_live",
]


def upgrade() -> None:
    for statement in UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    for statement in DOWNGRADE:
        op.execute(statement)
