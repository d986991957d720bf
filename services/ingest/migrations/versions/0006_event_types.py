"""Accepted events remember their type, so a higher version cannot turn an order line
into a fee (the old one would stay counted where it was).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Null where the outbox no longer holds the event: its type is then not checked.
    op.add_column("event_versions", sa.Column("event_type", sa.Text, nullable=True))
    op.execute(
        """
        UPDATE event_versions ev SET event_type = o.event_type
        FROM outbox o
        WHERE o.tenant_id = ev.tenant_id AND o.event_id = ev.event_id
          AND o.version = ev.version
        """
    )


def downgrade() -> None:
    op.drop_column("event_versions", "event_type")
