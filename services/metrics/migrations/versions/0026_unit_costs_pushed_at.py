"""Unit costs remember when they were pushed.

Of two costs for one SKU, store and ``effective_from`` under different event ids, the
greater id won, where of two FX rates for one pair and date the one pushed last does:
an ERP correcting a cost under a new id saw the old one kept. Costs kept before have
no time (NULL): any cost pushed after them wins, and between them the id decides.

Revision ID: 0026
Revises: 0025
Create Date: 2026-11-28
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0026"
down_revision: str | None = "0025"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("ALTER TABLE unit_costs ADD COLUMN ingested_at timestamptz")


def downgrade() -> None:
    op.execute("ALTER TABLE unit_costs DROP COLUMN ingested_at")
