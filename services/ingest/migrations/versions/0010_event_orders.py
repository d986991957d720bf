"""The order an event was accepted for, to check who may add to that order.

A user limited to some marketplaces or categories could push a new line, a refund or
a defect under the order id of an order it may not see (a US order, from a user
limited to GB; a Lamps order, from one limited to Rugs): the order's date, its
cancellation and its defects moved for everyone, and the answers told the user the
hidden order's purchase date. Each accepted event's order id is now recorded, indexed
by store and order, and filled here from the outbox where it still holds the event;
elsewhere null, and such an event names no order to the check.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-28
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("event_versions", sa.Column("order_id", sa.Text, nullable=True))
    op.execute(
        """
        UPDATE event_versions ev
        SET order_id = o.payload->>'order_id'
        FROM (
            SELECT DISTINCT ON (tenant_id, event_id) tenant_id, event_id, version,
                   convert_from(payload, 'UTF8')::jsonb->'payload' AS payload
            FROM outbox
            ORDER BY tenant_id, event_id, version DESC
        ) o
        WHERE o.tenant_id = ev.tenant_id AND o.event_id = ev.event_id
          AND o.version = ev.version AND o.payload->>'order_id' IS NOT NULL
        """
    )
    op.execute(
        "CREATE INDEX event_versions_by_order ON event_versions (tenant_id, store_id, order_id) "
        "WHERE order_id IS NOT NULL"
    )


def downgrade() -> None:
    op.drop_index("event_versions_by_order", table_name="event_versions")
    op.drop_column("event_versions", "order_id")
