"""Measure cells count their facts, not only their sum.

A cell kept only a sum, and the consumer skipped deltas of zero: a fee of 0, a day of
0 sessions, or fees of +2 and -2 pushed together left no row, though the same fees
pushed apart did, and a cell whose facts netted to zero was taken for empty when
another fact left it. ``facts`` counts the events in each cell; a row goes when it
holds no fact and no value. Rows already kept count one fact (their true count is not
kept anywhere but the events), and a store's row as many as its SKUs' rows.

Revision ID: 0025
Revises: 0024
Create Date: 2026-11-27
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0025"
down_revision: str | None = "0024"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for table in ("daily_measures", "daily_store_measures"):
        op.execute(f"ALTER TABLE {table} ADD COLUMN facts bigint NOT NULL DEFAULT 0")
    op.execute("UPDATE daily_measures SET facts = 1")
    op.execute(
        """
        UPDATE daily_store_measures s SET facts = greatest(per_sku.rows, 1)
        FROM (
            SELECT tenant_id, local_date, platform, store_id, marketplace, measure, currency,
                   count(*) AS rows
            FROM daily_measures
            GROUP BY tenant_id, local_date, platform, store_id, marketplace, measure, currency
        ) per_sku
        WHERE (s.tenant_id, s.local_date, s.platform, s.store_id, s.marketplace, s.measure,
               s.currency)
            = (per_sku.tenant_id, per_sku.local_date, per_sku.platform, per_sku.store_id,
               per_sku.marketplace, per_sku.measure, per_sku.currency)
        """
    )
    op.execute("UPDATE daily_store_measures SET facts = 1 WHERE facts = 0")


def downgrade() -> None:
    for table in ("daily_measures", "daily_store_measures"):
        op.execute(f"ALTER TABLE {table} DROP COLUMN facts")
