"""The category an order line was accepted with, to check who may replace it.

A user limited to some categories could push a higher version of another category's
line (renamed into its own, or cancelled) and so erase it. The accepted category is
now recorded, "" for a line without one, and filled here from the outbox where it
still holds the event. Null elsewhere: such a line stays replaceable only by callers
not limited to categories.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("event_versions", sa.Column("category", sa.Text, nullable=True))
    op.execute(
        """
        UPDATE event_versions ev
        SET category = coalesce(o.payload->>'category', '')
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


def downgrade() -> None:
    op.drop_column("event_versions", "category")
