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


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)
    # Orders already applied get their cells as if each had just been touched.
    op.execute(
        "CREATE TEMP TABLE attached_keys AS SELECT tenant_id, platform, store_id, order_id FROM orders"
    )
    from services.metrics.facts.attachments import ADD_CELLS_SQL, NEW_CELLS_SQL

    op.execute(NEW_CELLS_SQL)
    op.execute(ADD_CELLS_SQL.format(sign=""))
    op.execute("DROP TABLE attached_keys")


def downgrade() -> None:
    op.execute("ALTER TABLE kpi_settings DROP COLUMN refunds_by")
    op.execute("DROP INDEX events_raw_by_order")
    op.execute("DROP TABLE order_attached_cells")
