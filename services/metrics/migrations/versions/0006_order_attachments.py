"""Measures dated by the order's purchase date: refunds (when the tenant counts them
so), seller cancellations before shipping, order defects.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STATEMENTS = [
    # What each order adds to daily_measures by its purchase date, so the cells can be
    # taken out again when the order, or an event attached to it, changes.
    """
    CREATE TABLE order_attached_cells (
        tenant_id text NOT NULL,
        platform text NOT NULL,
        store_id text NOT NULL,
        order_id text NOT NULL,
        local_date date NOT NULL,
        marketplace text NOT NULL,
        sku text NOT NULL,
        measure text NOT NULL,
        currency text NOT NULL,
        value numeric NOT NULL
    )
    """,
    """
    CREATE INDEX order_attached_cells_order
    ON order_attached_cells (tenant_id, platform, store_id, order_id)
    """,
    # Refunds, shipments and defects of one order, found when the order changes.
    """
    CREATE INDEX events_raw_by_order
    ON events_raw (tenant_id, platform, store_id, (payload->>'order_id'))
    WHERE type IN ('refund', 'shipment', 'order_defect')
    """,
    """
    ALTER TABLE kpi_settings
    ADD COLUMN refunds_by text NOT NULL DEFAULT 'refunded_at'
    """,
]


_KEYS = "tenant_id, platform, store_id, order_id"
_CELL = "tenant_id, local_date, platform, store_id, marketplace, sku, measure, currency"
# The cells of every order already applied, as the consumer of this revision computed
# them (kept here as they were: later code must not change what this step did).
NEW_CELLS = f"""
INSERT INTO order_attached_cells ({_KEYS}, local_date, marketplace, sku, measure, currency, value)
WITH attached AS (
    SELECT o.tenant_id, o.platform, o.store_id, o.order_id, o.order_date, o.marketplace,
           r.type, r.payload
    FROM orders o
    JOIN events_raw r
      ON r.tenant_id = o.tenant_id AND r.platform = o.platform AND r.store_id = o.store_id
     AND r.payload->>'order_id' = o.order_id
     AND r.type IN ('refund', 'shipment', 'order_defect')
)
SELECT {_KEYS}, order_date, marketplace, coalesce(payload->>'sku', ''),
       'refund_amount_by_purchase', payload->'amount'->>'currency',
       sum((payload->'amount'->>'amount')::numeric)
FROM attached WHERE type = 'refund'
GROUP BY {_KEYS}, order_date, marketplace, coalesce(payload->>'sku', ''),
         payload->'amount'->>'currency'
UNION ALL
SELECT DISTINCT {_KEYS}, order_date, marketplace, '', 'orders_seller_cancelled', '', 1
FROM attached
WHERE type = 'shipment' AND (payload->>'cancelled_by_seller_before_ship')::boolean
UNION ALL
SELECT DISTINCT {_KEYS}, order_date, marketplace, '', 'orders_defective', '', 1
FROM attached WHERE type = 'order_defect'
"""
ADD_CELLS = f"""
INSERT INTO daily_measures AS m ({_CELL}, value)
SELECT {_CELL}, sum(value) FROM order_attached_cells GROUP BY {_CELL}
ON CONFLICT (tenant_id, measure, local_date, platform, store_id, marketplace, sku, currency)
DO UPDATE SET value = m.value + EXCLUDED.value
"""


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)
    # Orders already applied get their cells as if each had just been touched.
    op.execute(NEW_CELLS)
    op.execute(ADD_CELLS)


def downgrade() -> None:
    op.execute("ALTER TABLE kpi_settings DROP COLUMN refunds_by")
    op.execute("DROP INDEX events_raw_by_order")
    op.execute("DROP TABLE order_attached_cells")
