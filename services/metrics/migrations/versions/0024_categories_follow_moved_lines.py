"""A SKU's category follows its lines when a new version moves them.

The category tables were kept as lines arrived: a new version that moved a SKU's
newest categorized line to another SKU or store, dated it earlier than another, or
dropped its category left the old name on that SKU's ads, traffic, fees and stock. The
consumer now recomputes the SKUs such a version leaves, from the lines, through an
index of the categorized lines by SKU and purchase time. Ties on the purchase time go
to the greater event id, in both tables (``event_id``), so the name never depends on
the order lines arrived in. The tables are recomputed here with that rule.

Revision ID: 0024
Revises: 0023
Create Date: 2026-11-27
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0024"
down_revision: str | None = "0023"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TABLES = (
    ("sku_categories", "tenant_id, sku"),
    ("store_sku_categories", "tenant_id, platform, store_id, marketplace, sku"),
)


def upgrade() -> None:
    op.execute(
        """
        CREATE INDEX order_lines_categorized_by_sku
        ON order_lines (tenant_id, sku, purchased_at DESC, event_id DESC)
        WHERE category <> ''
        """
    )
    for table, keys in _TABLES:
        op.execute(f"ALTER TABLE {table} ADD COLUMN event_id text NOT NULL DEFAULT ''")
        op.execute(f"DELETE FROM {table}")
        op.execute(
            f"""
            INSERT INTO {table} ({keys}, category, seen_at, event_id)
            SELECT DISTINCT ON ({keys}) {keys}, category, purchased_at, event_id
            FROM order_lines WHERE category <> ''
            ORDER BY {keys}, purchased_at DESC, event_id DESC
            """
        )


def downgrade() -> None:
    for table, _ in _TABLES:
        op.execute(f"ALTER TABLE {table} DROP COLUMN event_id")
    op.execute("DROP INDEX order_lines_categorized_by_sku")
