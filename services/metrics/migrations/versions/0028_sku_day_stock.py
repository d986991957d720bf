"""Stock by SKU-day: each SKU's stock on each date, added up over its stores.

``stockout_rate`` counts SKU-days, and a SKU is often stocked in several stores and
marketplaces at once: finding its SKU-days in the per-store cells pairs them up day by
day (a year of 2,000 SKUs in two marketplaces took 2.5 s, against a third of that when
the cells were miscounted as SKU-days). This table keeps them paired, as the cells are
written, for every question that names no platform, store or marketplace.

Revision ID: 0028
Revises: 0027
Create Date: 2026-11-28
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0028"
down_revision: str | None = "0027"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE daily_sku_stock (
            tenant_id text NOT NULL,
            local_date date NOT NULL,
            sku text NOT NULL,
            on_hand numeric NOT NULL DEFAULT 0,
            snapshots numeric NOT NULL DEFAULT 0,
            PRIMARY KEY (tenant_id, local_date, sku)
        )
        """
    )
    op.execute(
        """
        INSERT INTO daily_sku_stock (tenant_id, local_date, sku, on_hand, snapshots)
        SELECT tenant_id, local_date, sku,
               coalesce(sum(value) FILTER (WHERE measure = 'on_hand'), 0),
               coalesce(sum(value) FILTER (WHERE measure = 'snapshots'), 0)
        FROM daily_measures WHERE measure IN ('on_hand', 'snapshots')
        GROUP BY tenant_id, local_date, sku
        HAVING sum(value) FILTER (WHERE measure = 'snapshots') <> 0
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE daily_sku_stock")
