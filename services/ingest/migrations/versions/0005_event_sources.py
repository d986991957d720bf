"""Accepted events remember their store and marketplace, so a caller limited to some
stores cannot replace (or move) an event of another store by reusing its id.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Null where the outbox no longer holds the event: such an event stays replaceable
    # only by callers that are not limited to stores or marketplaces.
    op.add_column("event_versions", sa.Column("store_id", sa.Text, nullable=True))
    op.add_column("event_versions", sa.Column("marketplace", sa.Text, nullable=True))
    op.execute(
        """
        UPDATE event_versions ev
        SET store_id = o.source->>'store_id', marketplace = o.source->>'marketplace'
        FROM (
            SELECT DISTINCT ON (tenant_id, event_id) tenant_id, event_id, version,
                   convert_from(payload, 'UTF8')::jsonb->'source' AS source
            FROM outbox
            ORDER BY tenant_id, event_id, version DESC
        ) o
        WHERE o.tenant_id = ev.tenant_id AND o.event_id = ev.event_id
          AND o.version = ev.version
        """
    )


def downgrade() -> None:
    op.drop_column("event_versions", "marketplace")
    op.drop_column("event_versions", "store_id")
