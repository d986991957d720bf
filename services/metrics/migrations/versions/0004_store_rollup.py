"""Sales per store and day, without SKU: what most dashboards ask, in a few rows a day.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE daily_store_sales (
            tenant_id text NOT NULL,
            local_date date NOT NULL,
            platform text NOT NULL,
            store_id text NOT NULL,
            marketplace text NOT NULL,
            currency text NOT NULL,
            gross numeric NOT NULL DEFAULT 0,
            shipping numeric NOT NULL DEFAULT 0,
            discount numeric NOT NULL DEFAULT 0,
            tax numeric NOT NULL DEFAULT 0,
            units bigint NOT NULL DEFAULT 0,
            lines integer NOT NULL DEFAULT 0,
            PRIMARY KEY (tenant_id, local_date, platform, store_id, marketplace, currency)
        )
        """
    )
    op.execute(
        """
        INSERT INTO daily_store_sales
        SELECT tenant_id, local_date, platform, store_id, marketplace, currency,
               sum(gross), sum(shipping), sum(discount), sum(tax), sum(units), sum(lines)
        FROM daily_sales
        GROUP BY tenant_id, local_date, platform, store_id, marketplace, currency
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE daily_store_sales")
