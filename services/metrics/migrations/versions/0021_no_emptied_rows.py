"""No rollup row for a group every fact has left.

A new version that moved a line to another store, day, SKU or category, or an order's
first line to another day, left the old group's rows behind holding zeros: a grouped
answer showed a row of zeros for a store with no data. The consumer now deletes the
rows it empties; these are the ones already emptied. Nothing to restore on the way
down: the rows held nothing.

Revision ID: 0021
Revises: 0020
Create Date: 2026-11-27
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SALES_EMPTY = "lines = 0 AND units = 0 AND gross = 0 AND shipping = 0 AND discount = 0 AND tax = 0"
_EMPTY = {
    "daily_sales": _SALES_EMPTY,
    "daily_store_sales": _SALES_EMPTY,
    "daily_orders": "orders = 0 AND orders_all = 0",
    "daily_sku_orders": "orders = 0 AND orders_all = 0 AND cancelled = 0",
    "daily_category_orders": "orders = 0 AND orders_all = 0 AND cancelled = 0",
}


def upgrade() -> None:
    for table, empty in _EMPTY.items():
        op.execute(f"DELETE FROM {table} WHERE {empty}")


def downgrade() -> None:
    """Nothing to restore: the deleted rows held nothing."""
