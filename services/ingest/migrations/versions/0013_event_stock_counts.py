"""The count an inventory snapshot was accepted for, to check who may replace it.

A warehouse's stock on a date is its latest snapshot, whatever marketplace a snapshot
was sent under: a user limited to MX replaced a US count of the same store, SKU,
warehouse and date with its own, and the US stock went from 350 to nothing for
everyone. Each accepted snapshot's date and warehouse are now recorded, indexed by
store and SKU, and filled here from the outbox where it still holds the snapshot;
elsewhere null, and such a snapshot names no count to the check.

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # The date (ten characters, always) then the warehouse: one text, one index entry.
    op.add_column("event_versions", sa.Column("stock_count", sa.Text, nullable=True))
    op.execute(
        """
        UPDATE event_versions ev
        SET stock_count = (o.payload->>'date') || ' ' || (o.payload->>'warehouse')
        FROM (
            SELECT DISTINCT ON (tenant_id, event_id) tenant_id, event_id, version,
                   convert_from(payload, 'UTF8')::jsonb->'payload' AS payload
            FROM outbox
            WHERE event_type = 'inventory_snapshot'
            ORDER BY tenant_id, event_id, version DESC
        ) o
        WHERE o.tenant_id = ev.tenant_id AND o.event_id = ev.event_id
          AND o.version = ev.version AND ev.event_type = 'inventory_snapshot'
        """
    )
    op.execute(
        "CREATE INDEX event_versions_by_stock_count "
        "ON event_versions (tenant_id, store_id, sku, stock_count) WHERE stock_count IS NOT NULL"
    )


def downgrade() -> None:
    op.drop_index("event_versions_by_stock_count", table_name="event_versions")
    op.drop_column("event_versions", "stock_count")
