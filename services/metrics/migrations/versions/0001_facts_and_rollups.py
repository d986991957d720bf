"""Order-line facts, orders, daily rollups, and the other event types as received.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


STATEMENTS = [
    """
    CREATE TABLE order_lines (
            tenant_id text NOT NULL,
            event_id text NOT NULL,
            version integer NOT NULL,
            platform text NOT NULL,
            store_id text NOT NULL,
            marketplace text NOT NULL,
            order_id text NOT NULL,
            line_id text NOT NULL,
            sku text NOT NULL,
            category text NOT NULL DEFAULT '',
            status text NOT NULL,
            quantity integer NOT NULL,
            currency text NOT NULL,
            unit_price numeric NOT NULL,
            shipping numeric NOT NULL DEFAULT 0,
            discount numeric NOT NULL DEFAULT 0,
            tax numeric NOT NULL DEFAULT 0,
            purchased_at timestamptz NOT NULL,
            local_date date NOT NULL,
            PRIMARY KEY (tenant_id, event_id)
        )
    """,
    """
    CREATE INDEX order_lines_by_order ON order_lines (tenant_id, platform, store_id, order_id)
    """,
    """
    CREATE TABLE orders (
            tenant_id text NOT NULL,
            platform text NOT NULL,
            store_id text NOT NULL,
            order_id text NOT NULL,
            marketplace text NOT NULL,
            order_date date NOT NULL,
            live_lines integer NOT NULL,
            lines integer NOT NULL,
            PRIMARY KEY (tenant_id, platform, store_id, order_id)
        )
    """,
    """
    -- Sales of live lines per local day, kept in the original currency.
        CREATE TABLE daily_sales (
            tenant_id text NOT NULL,
            local_date date NOT NULL,
            platform text NOT NULL,
            store_id text NOT NULL,
            marketplace text NOT NULL,
            sku text NOT NULL,
            category text NOT NULL,
            currency text NOT NULL,
            gross numeric NOT NULL DEFAULT 0,
            shipping numeric NOT NULL DEFAULT 0,
            discount numeric NOT NULL DEFAULT 0,
            tax numeric NOT NULL DEFAULT 0,
            units bigint NOT NULL DEFAULT 0,
            lines integer NOT NULL DEFAULT 0,
            PRIMARY KEY (tenant_id, local_date, platform, store_id, marketplace, sku, category, currency)
        )
    """,
    """
    -- Orders per local day of their earliest line: additive over days and stores.
        CREATE TABLE daily_orders (
            tenant_id text NOT NULL,
            local_date date NOT NULL,
            platform text NOT NULL,
            store_id text NOT NULL,
            marketplace text NOT NULL,
            orders integer NOT NULL DEFAULT 0,
            orders_all integer NOT NULL DEFAULT 0,
            PRIMARY KEY (tenant_id, local_date, platform, store_id, marketplace)
        )
    """,
    """
    CREATE TABLE events_raw (
            tenant_id text NOT NULL,
            event_id text NOT NULL,
            type text NOT NULL,
            version integer NOT NULL,
            platform text NOT NULL,
            store_id text NOT NULL,
            marketplace text NOT NULL,
            occurred_at timestamptz NOT NULL,
            payload jsonb NOT NULL,
            PRIMARY KEY (tenant_id, event_id)
        )
    """,
    """
    CREATE INDEX events_raw_by_type ON events_raw (tenant_id, type)
    """,
]


def upgrade() -> None:
    # One statement per call: asyncpg prepares each statement on its own.
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    for table in ("events_raw", "daily_orders", "daily_sales", "orders", "order_lines"):
        op.execute(f"DROP TABLE {table}")
