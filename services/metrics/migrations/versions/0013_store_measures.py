"""Measures per store and day, without SKU: ads, traffic, fees and refunds of a whole
store read a few rows a day instead of one per SKU.

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-26
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE daily_store_measures (
            tenant_id text NOT NULL,
            measure text NOT NULL,
            local_date date NOT NULL,
            platform text NOT NULL,
            store_id text NOT NULL,
            marketplace text NOT NULL,
            currency text NOT NULL,
            value numeric NOT NULL DEFAULT 0,
            PRIMARY KEY (tenant_id, measure, local_date, platform, store_id, marketplace, currency)
        )
        """
    )
    op.execute(
        """
        INSERT INTO daily_store_measures
        SELECT tenant_id, measure, local_date, platform, store_id, marketplace, currency,
               sum(value)
        FROM daily_measures
        GROUP BY tenant_id, measure, local_date, platform, store_id, marketplace, currency
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE daily_store_measures")
