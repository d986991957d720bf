"""No measure row for a cell every event has left.

As 0021 did for sales and orders: a fee, ad spend, traffic or refund moved by a new
version (or by a store's new time zone, or an order's new date) left its old cell
holding zero, and grouped answers a row of zeros. The consumer now deletes the rows it
empties; these are the ones already emptied. A store's row goes only with its last
per-SKU row. Nothing to restore on the way down: the rows held nothing.

Revision ID: 0023
Revises: 0022
Create Date: 2026-11-27
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0023"
down_revision: str | None = "0022"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("DELETE FROM daily_measures WHERE value = 0")
    op.execute(
        """
        DELETE FROM daily_store_measures s WHERE s.value = 0 AND NOT EXISTS (
            SELECT FROM daily_measures m
            WHERE m.tenant_id = s.tenant_id AND m.local_date = s.local_date
              AND m.platform = s.platform AND m.store_id = s.store_id
              AND m.marketplace = s.marketplace AND m.measure = s.measure
              AND m.currency = s.currency
        )
        """
    )


def downgrade() -> None:
    """Nothing to restore: the deleted rows held nothing."""
