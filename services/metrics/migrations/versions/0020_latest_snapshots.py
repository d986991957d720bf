"""A warehouse's stock on a date is its latest snapshot, whatever its event id.

A snapshot is a level, not a movement: two snapshots of one SKU in one warehouse on one
date (a morning and an evening count sent under two event ids) added up, doubling the
stock. The consumer now counts, for each (store, SKU, warehouse, date), only the
snapshot taken last (``occurred_at``, then the greater event id); this index finds a
key's snapshots, and the cells of those already applied are set to the latest ones.

Revision ID: 0020
Revises: 0019
Create Date: 2026-11-27
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Per cell (store, SKU, date): what the latest snapshots hold less what every snapshot
# added, for on_hand and for the count of snapshots.
_CHANGES = """
WITH snapshots AS (
    SELECT tenant_id, platform, store_id, marketplace, payload->>'sku' AS sku,
           (payload->>'date')::date AS local_date, (payload->>'on_hand')::numeric AS on_hand,
           row_number() OVER (
               PARTITION BY tenant_id, platform, store_id, marketplace, payload->>'sku',
                            payload->>'warehouse', payload->>'date'
               ORDER BY occurred_at DESC, event_id DESC
           ) AS rank
    FROM events_raw WHERE type = 'inventory_snapshot'
),
changes AS (
    SELECT tenant_id, platform, store_id, marketplace, sku, local_date,
           -sum(on_hand) FILTER (WHERE rank > 1) AS on_hand, -count(*) FILTER (WHERE rank > 1) AS snapshots
    FROM snapshots GROUP BY tenant_id, platform, store_id, marketplace, sku, local_date
    HAVING count(*) FILTER (WHERE rank > 1) > 0
)
SELECT tenant_id, platform, store_id, marketplace, sku, local_date, 'on_hand' AS measure,
       on_hand AS value FROM changes
UNION ALL
SELECT tenant_id, platform, store_id, marketplace, sku, local_date, 'snapshots', snapshots
FROM changes
"""
_SAME_CELL = (
    "m.tenant_id = c.tenant_id AND m.local_date = c.local_date AND m.platform = c.platform "
    "AND m.store_id = c.store_id AND m.marketplace = c.marketplace AND m.currency = '' "
    "AND m.measure = c.measure"
)


def _move(sign: str) -> None:
    op.execute(
        f"UPDATE daily_measures m SET value = m.value {sign} c.value "
        f"FROM ({_CHANGES}) c WHERE {_SAME_CELL} AND m.sku = c.sku"
    )
    per_store = (
        "SELECT tenant_id, platform, store_id, marketplace, local_date, measure, "
        f"sum(value) AS value FROM ({_CHANGES}) s "
        "GROUP BY tenant_id, platform, store_id, marketplace, local_date, measure"
    )
    op.execute(
        f"UPDATE daily_store_measures m SET value = m.value {sign} c.value "
        f"FROM ({per_store}) c WHERE {_SAME_CELL}"
    )


def upgrade() -> None:
    op.execute(
        """
        CREATE INDEX events_raw_snapshots ON events_raw
            (tenant_id, platform, store_id, (payload->>'sku'), (payload->>'warehouse'),
             (payload->>'date'))
        WHERE type = 'inventory_snapshot'
        """
    )
    _move("+")


def downgrade() -> None:
    _move("-")
    op.execute("DROP INDEX events_raw_snapshots")
