"""A warehouse's latest snapshot of a date is its store's, whatever marketplace it names.

For stock a store is its platform and store id, but the latest snapshot of a SKU in a
warehouse on a date was chosen per marketplace too: a store that sent a morning count
under US and an evening one under MX had both added up. The consumer now chooses per
store; this takes out of the cells the snapshots that were counted but are not their
store's latest, and deletes the rows that leaves empty. The way down puts them back.

Revision ID: 0027
Revises: 0026
Create Date: 2026-11-28
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0027"
down_revision: str | None = "0026"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Per cell: what the snapshots latest in their marketplace but not in their store put in.
_COUNTED_NOT_LATEST = """
WITH ranked AS (
    SELECT tenant_id, platform, store_id, marketplace, payload->>'sku' AS sku,
           (payload->>'date')::date AS local_date, (payload->>'on_hand')::numeric AS on_hand,
           row_number() OVER (
               PARTITION BY tenant_id, platform, store_id, marketplace, payload->>'sku',
                            payload->>'warehouse', payload->>'date'
               ORDER BY occurred_at DESC, event_id DESC
           ) AS in_marketplace,
           row_number() OVER (
               PARTITION BY tenant_id, platform, store_id, payload->>'sku',
                            payload->>'warehouse', payload->>'date'
               ORDER BY occurred_at DESC, event_id DESC
           ) AS in_store
    FROM events_raw WHERE type = 'inventory_snapshot'
)
SELECT tenant_id, local_date, platform, store_id, marketplace, sku, measure,
       sum(value) AS value, count(*) AS facts
FROM ranked CROSS JOIN LATERAL (VALUES ('on_hand', on_hand), ('snapshots', 1::numeric))
     AS m(measure, value)
WHERE in_marketplace = 1 AND in_store > 1
GROUP BY tenant_id, local_date, platform, store_id, marketplace, sku, measure
"""
_STORE_CELL = "tenant_id, measure, local_date, platform, store_id, marketplace, currency"


def _move(sign: str) -> None:
    op.execute(
        f"""
        INSERT INTO daily_measures AS m ({_STORE_CELL}, sku, value, facts)
        SELECT tenant_id, measure, local_date, platform, store_id, marketplace, '', sku,
               {sign} value, {sign} facts
        FROM ({_COUNTED_NOT_LATEST}) c
        ON CONFLICT (tenant_id, measure, local_date, platform, store_id, marketplace, sku, currency)
        DO UPDATE SET value = m.value + EXCLUDED.value, facts = m.facts + EXCLUDED.facts
        """
    )
    op.execute(
        f"""
        INSERT INTO daily_store_measures AS m ({_STORE_CELL}, value, facts)
        SELECT tenant_id, measure, local_date, platform, store_id, marketplace, '',
               {sign} sum(value), {sign} sum(facts)
        FROM ({_COUNTED_NOT_LATEST}) c
        GROUP BY tenant_id, measure, local_date, platform, store_id, marketplace
        ON CONFLICT (tenant_id, measure, local_date, platform, store_id, marketplace, currency)
        DO UPDATE SET value = m.value + EXCLUDED.value, facts = m.facts + EXCLUDED.facts
        """
    )


def upgrade() -> None:
    _move("-")
    # The rows that held only those snapshots (as the consumer deletes what it empties).
    op.execute(
        f"""
        DELETE FROM daily_measures m USING ({_COUNTED_NOT_LATEST}) c
        WHERE m.tenant_id = c.tenant_id AND m.measure = c.measure
          AND m.local_date = c.local_date AND m.platform = c.platform
          AND m.store_id = c.store_id AND m.marketplace = c.marketplace AND m.sku = c.sku
          AND m.currency = '' AND m.facts <= 0 AND m.value = 0
        """
    )
    op.execute(
        f"""
        DELETE FROM daily_store_measures s USING ({_COUNTED_NOT_LATEST}) c
        WHERE s.tenant_id = c.tenant_id AND s.measure = c.measure
          AND s.local_date = c.local_date AND s.platform = c.platform
          AND s.store_id = c.store_id AND s.marketplace = c.marketplace
          AND s.currency = '' AND s.facts <= 0 AND s.value = 0
          AND NOT EXISTS (
              SELECT FROM daily_measures m
              WHERE m.tenant_id = s.tenant_id AND m.measure = s.measure
                AND m.local_date = s.local_date AND m.platform = s.platform
                AND m.store_id = s.store_id AND m.marketplace = s.marketplace
                AND m.currency = s.currency
          )
        """
    )


def downgrade() -> None:
    _move("+")
