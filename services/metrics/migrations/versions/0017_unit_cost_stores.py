"""Unit costs remember the store they were pushed for; that store's own cost comes first.

A SKU sold in two stores may cost differently in each (landed in another warehouse).
The newest cost of any store applied to every store, so one store's cost priced
another's units, and an agency granted one store read another's cost through `cogs`.
A store now takes its own cost; one with none for the SKU takes the tenant's newest.

Revision ID: 0017
Revises: 0016
Create Date: 2026-11-27
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("ALTER TABLE unit_costs ADD COLUMN platform text, ADD COLUMN store_id text")
    # Every unit_cost event is kept whole in events_raw, with its source.
    op.execute(
        """
        UPDATE unit_costs u SET platform = r.platform, store_id = r.store_id
        FROM events_raw r WHERE r.tenant_id = u.tenant_id AND r.event_id = u.event_id
        """
    )


def downgrade() -> None:
    op.execute("ALTER TABLE unit_costs DROP COLUMN platform, DROP COLUMN store_id")
