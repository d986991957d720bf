"""Orders by SKU: each order counted once under every SKU it contains.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-26
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STATEMENTS = [
    # Which SKUs each order holds, dated like the order (by its earliest line).
    """
    CREATE TABLE order_skus (
        tenant_id text NOT NULL,
        platform text NOT NULL,
        store_id text NOT NULL,
        order_id text NOT NULL,
        sku text NOT NULL,
        marketplace text NOT NULL,
        order_date date NOT NULL,
        live boolean NOT NULL,
        PRIMARY KEY (tenant_id, platform, store_id, order_id, sku)
    )
    """,
    # Additive over days and stores; over SKUs it is not (an order may hold several).
    """
    CREATE TABLE daily_sku_orders (
        tenant_id text NOT NULL,
        local_date date NOT NULL,
        platform text NOT NULL,
        store_id text NOT NULL,
        marketplace text NOT NULL,
        sku text NOT NULL,
        orders integer NOT NULL DEFAULT 0,
        orders_all integer NOT NULL DEFAULT 0,
        PRIMARY KEY (tenant_id, local_date, platform, store_id, marketplace, sku)
    )
    """,
    """
    INSERT INTO order_skus
    SELECT l.tenant_id, l.platform, l.store_id, l.order_id, l.sku, o.marketplace, o.order_date,
           bool_or(l.status <> 'cancelled')
    FROM order_lines l JOIN orders o USING (tenant_id, platform, store_id, order_id)
    GROUP BY l.tenant_id, l.platform, l.store_id, l.order_id, l.sku, o.marketplace, o.order_date
    """,
    """
    INSERT INTO daily_sku_orders
    SELECT tenant_id, order_date, platform, store_id, marketplace, sku,
           count(*) FILTER (WHERE live), count(*)
    FROM order_skus
    GROUP BY tenant_id, order_date, platform, store_id, marketplace, sku
    """,
]


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TABLE daily_sku_orders")
    op.execute("DROP TABLE order_skus")
