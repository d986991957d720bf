"""Orders by category: each order counted once under every category it holds.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-26
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STATEMENTS = [
    "ALTER TABLE order_skus ADD COLUMN category text NOT NULL DEFAULT ''",
    """
    UPDATE order_skus s SET category = l.category
    FROM (
        SELECT tenant_id, platform, store_id, order_id, sku, max(category) AS category
        FROM order_lines GROUP BY tenant_id, platform, store_id, order_id, sku
    ) l
    WHERE (s.tenant_id, s.platform, s.store_id, s.order_id, s.sku)
        = (l.tenant_id, l.platform, l.store_id, l.order_id, l.sku)
    """,
    """
    CREATE TABLE daily_category_orders (
        tenant_id text NOT NULL,
        local_date date NOT NULL,
        platform text NOT NULL,
        store_id text NOT NULL,
        marketplace text NOT NULL,
        category text NOT NULL,
        orders integer NOT NULL DEFAULT 0,
        orders_all integer NOT NULL DEFAULT 0,
        PRIMARY KEY (tenant_id, local_date, platform, store_id, marketplace, category)
    )
    """,
    """
    INSERT INTO daily_category_orders
    SELECT tenant_id, order_date, platform, store_id, marketplace, category,
           count(*) FILTER (WHERE live), count(*)
    FROM (
        SELECT tenant_id, order_date, platform, store_id, marketplace, order_id, category,
               bool_or(live) AS live
        FROM order_skus
        GROUP BY tenant_id, order_date, platform, store_id, marketplace, order_id, category
    ) o
    GROUP BY tenant_id, order_date, platform, store_id, marketplace, category
    """,
]


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TABLE daily_category_orders")
    op.execute("ALTER TABLE order_skus DROP COLUMN category")
