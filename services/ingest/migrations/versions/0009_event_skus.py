"""The SKU an order line was accepted with, to check who may sell it.

A SKU's measures (fees, ads, traffic, stock) take the category of its newest order
line: a user limited to Lamps could push one line of another category's SKU under
Lamps and so read, and move for everyone, that SKU's fees. The accepted SKU of each
order line is now recorded, indexed for the lines of a SKU, and filled here from the
outbox where it still holds the event; elsewhere null, and such lines name no SKU.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("event_versions", sa.Column("sku", sa.Text, nullable=True))
    op.execute(
        """
        UPDATE event_versions ev
        SET sku = o.payload->>'sku'
        FROM (
            SELECT DISTINCT ON (tenant_id, event_id) tenant_id, event_id, version,
                   convert_from(payload, 'UTF8')::jsonb->'payload' AS payload
            FROM outbox WHERE event_type = 'order_line'
            ORDER BY tenant_id, event_id, version DESC
        ) o
        WHERE o.tenant_id = ev.tenant_id AND o.event_id = ev.event_id
          AND o.version = ev.version
        """
    )
    op.execute(
        "CREATE INDEX event_versions_lines_by_sku ON event_versions (tenant_id, sku) "
        "WHERE sku IS NOT NULL"
    )


def downgrade() -> None:
    op.drop_index("event_versions_lines_by_sku", table_name="event_versions")
    op.drop_column("event_versions", "sku")
