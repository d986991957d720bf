"""Stores whose local dates follow a time zone other than their marketplace's.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-26
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE store_timezones (
            tenant_id text NOT NULL,
            store_id text NOT NULL,
            timezone text NOT NULL,
            updated_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (tenant_id, store_id)
        )
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE store_timezones")
