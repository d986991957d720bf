"""Daily measures of the other event types, FX rates and unit costs.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STATEMENTS = [
    # Additive measures (refund amounts, fees, ad cost, sessions ...) per local day, in
    # the original currency ('' for counts); moved by old and new contributions.
    """
    CREATE TABLE daily_measures (
        tenant_id text NOT NULL,
        local_date date NOT NULL,
        platform text NOT NULL,
        store_id text NOT NULL,
        marketplace text NOT NULL,
        sku text NOT NULL,
        measure text NOT NULL,
        currency text NOT NULL,
        value numeric NOT NULL DEFAULT 0,
        PRIMARY KEY (tenant_id, measure, local_date, platform, store_id, marketplace, sku, currency)
    )
    """,
    """
    CREATE TABLE fx_rates (
        tenant_id text NOT NULL,
        event_id text NOT NULL,
        rate_date date NOT NULL,
        base text NOT NULL,
        quote text NOT NULL,
        rate numeric NOT NULL,
        PRIMARY KEY (tenant_id, event_id)
    )
    """,
    "CREATE INDEX fx_rates_by_date ON fx_rates (tenant_id, rate_date)",
    """
    CREATE TABLE unit_costs (
        tenant_id text NOT NULL,
        event_id text NOT NULL,
        sku text NOT NULL,
        effective_from date NOT NULL,
        cost numeric NOT NULL,
        currency text NOT NULL,
        PRIMARY KEY (tenant_id, event_id)
    )
    """,
    "CREATE INDEX unit_costs_by_sku ON unit_costs (tenant_id, sku, effective_from)",
]


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    for table in ("unit_costs", "fx_rates", "daily_measures"):
        op.execute(f"DROP TABLE {table}")
