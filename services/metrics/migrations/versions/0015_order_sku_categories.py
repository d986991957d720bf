"""An order holds a SKU under every category its lines name.

Two lines of one SKU in one order may name two categories (one line without a
category, a category renamed by a later version). ``order_skus`` kept one row per
SKU under the greatest of them, so the order vanished from the other category's
orders while its sales stayed there. It now keeps a row per SKU and category;
``daily_sku_orders`` counts each order once per SKU again (without the category),
and orders by SKU and category together are counted distinct from ``order_skus``.

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-27
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ORDER = "tenant_id, platform, store_id, order_id"
_DAY = "tenant_id, local_date, platform, store_id, marketplace"


def _order_skus(category: str, group: str) -> str:
    """Refills order_skus from the lines, a row per SKU and ``group``."""
    return f"""
    INSERT INTO order_skus (tenant_id, platform, store_id, order_id, sku, marketplace,
                            order_date, live, category, order_live)
    SELECT l.tenant_id, l.platform, l.store_id, l.order_id, l.sku, o.marketplace,
           o.order_date, bool_or(l.status <> 'cancelled'), {category}, o.live_lines > 0
    FROM order_lines l JOIN orders o USING ({_ORDER})
    GROUP BY l.tenant_id, l.platform, l.store_id, l.order_id, l.sku, o.marketplace,
             o.order_date, o.live_lines{group}
    """


def _counts(dimension: str) -> str:
    """Each order once per ``dimension`` (SKU or category), then counted per day: live
    when a line of it is, cancelled when the whole order is."""
    return f"""
    SELECT tenant_id, order_date, platform, store_id, marketplace, {dimension},
           count(*) FILTER (WHERE live), count(*), count(*) FILTER (WHERE NOT order_live)
    FROM (
        SELECT {_ORDER}, order_date, marketplace, {dimension}, bool_or(live) AS live,
               bool_or(order_live) AS order_live
        FROM order_skus GROUP BY {_ORDER}, order_date, marketplace, {dimension}
    ) per_order
    GROUP BY tenant_id, order_date, platform, store_id, marketplace, {dimension}
    """


_CATEGORY_COUNTS = (
    f"INSERT INTO daily_category_orders ({_DAY}, category, orders, orders_all, cancelled) "
    + _counts("category")
)

UPGRADE = [
    "ALTER TABLE order_skus DROP CONSTRAINT order_skus_pkey",
    "DELETE FROM order_skus",
    _order_skus("l.category", ", l.category"),
    f"ALTER TABLE order_skus ADD PRIMARY KEY ({_ORDER}, sku, category)",
    "ALTER TABLE daily_sku_orders DROP CONSTRAINT daily_sku_orders_pkey",
    "DELETE FROM daily_sku_orders",
    "ALTER TABLE daily_sku_orders DROP COLUMN category",
    f"INSERT INTO daily_sku_orders ({_DAY}, sku, orders, orders_all, cancelled) {_counts('sku')}",
    f"ALTER TABLE daily_sku_orders ADD PRIMARY KEY ({_DAY}, sku)",
    "DELETE FROM daily_category_orders",
    _CATEGORY_COUNTS,
]

DOWNGRADE = [
    "ALTER TABLE order_skus DROP CONSTRAINT order_skus_pkey",
    "DELETE FROM order_skus",
    _order_skus("max(l.category)", ""),
    f"ALTER TABLE order_skus ADD PRIMARY KEY ({_ORDER}, sku)",
    "ALTER TABLE daily_sku_orders DROP CONSTRAINT daily_sku_orders_pkey",
    "DELETE FROM daily_sku_orders",
    "ALTER TABLE daily_sku_orders ADD COLUMN category text NOT NULL DEFAULT ''",
    f"""
    INSERT INTO daily_sku_orders ({_DAY}, sku, category, orders, orders_all, cancelled)
    SELECT tenant_id, order_date, platform, store_id, marketplace, sku, category,
           count(*) FILTER (WHERE live), count(*), count(*) FILTER (WHERE NOT order_live)
    FROM order_skus
    GROUP BY tenant_id, order_date, platform, store_id, marketplace, sku, category
    """,
    f"ALTER TABLE daily_sku_orders ADD PRIMARY KEY ({_DAY}, sku, category)",
    "DELETE FROM daily_category_orders",
    _CATEGORY_COUNTS,
]


def upgrade() -> None:
    for statement in UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    for statement in DOWNGRADE:
        op.execute(statement)
