"""Measures dated by an order's purchase date rather than their own event's date.

A refund counted by purchase date, a seller's cancellation before shipping, an order
defect: each belongs to an order (orders themselves are counted in ``daily_orders``),
and the order's date (its earliest line) may arrive before or after the event, or move
when an earlier line turns up. So the cells an order adds to ``daily_measures`` are
kept per order in ``order_attached_cells``, and every batch that touches an order, or
an event attached to it, takes its old cells out and puts freshly computed ones in. An
event whose order has not arrived adds nothing yet; the order's first line brings it in.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from services.metrics.facts.repository import (
    MEASURE_CELL,
    add_measure_cells,
    default_zone_sql,
    drop_emptied_measures,
)
from shared.db import row_count

ATTACHED_TYPES = ("refund", "shipment", "order_defect")
_KEYS = "tenant_id, platform, store_id, order_id"

# The cells of every order in attached_keys, computed from its current state. A refund
# whose order is not there (yet, or no longer) counts at its own refunded_at local date,
# as it would by default, so that no refund is left out of the total meanwhile; the
# order's first line moves it to the purchase date.
NEW_CELLS_SQL = f"""
INSERT INTO order_attached_cells ({_KEYS}, local_date, marketplace, sku, measure, currency, value)
WITH touched AS (
    SELECT k.*, o.order_date, o.marketplace
    FROM (SELECT DISTINCT * FROM attached_keys) k LEFT JOIN orders o USING ({_KEYS})
),
attached AS (
    SELECT t.tenant_id, t.platform, t.store_id, t.order_id, t.order_date,
           coalesce(t.marketplace, r.marketplace) AS marketplace, r.type, r.payload
    FROM touched t
    JOIN events_raw r
      ON r.tenant_id = t.tenant_id AND r.platform = t.platform AND r.store_id = t.store_id
     AND r.payload->>'order_id' = t.order_id
     AND r.type IN ('refund', 'shipment', 'order_defect')
),
refunds AS (
    SELECT a.*, coalesce(
        a.order_date,
        ((a.payload->>'refunded_at')::timestamptz
            AT TIME ZONE coalesce(z.timezone, {default_zone_sql("a.marketplace")}))::date
    ) AS counted_on
    FROM attached a
    LEFT JOIN store_timezones z ON z.tenant_id = a.tenant_id AND z.store_id = a.store_id
    WHERE a.type = 'refund'
)
SELECT {_KEYS}, counted_on, marketplace, coalesce(payload->>'sku', ''),
       'refund_amount_by_purchase', payload->'amount'->>'currency',
       sum((payload->'amount'->>'amount')::numeric)
FROM refunds
GROUP BY {_KEYS}, counted_on, marketplace, coalesce(payload->>'sku', ''),
         payload->'amount'->>'currency'
UNION ALL
SELECT DISTINCT {_KEYS}, order_date, marketplace, '', 'orders_seller_cancelled', '', 1
FROM attached
WHERE type = 'shipment' AND order_date IS NOT NULL
  AND (payload->>'cancelled_by_seller_before_ship')::boolean
UNION ALL
SELECT DISTINCT {_KEYS}, order_date, marketplace, '', 'orders_defective', '', 1
FROM attached WHERE type = 'order_defect' AND order_date IS NOT NULL
"""

# The cells of the orders in attached_keys, to add ({sign} = "") or take out ({sign} = "-").
CELLS_SQL = f"""
SELECT {MEASURE_CELL}, {{sign}}sum(value) AS value, {{sign}}count(*) AS facts
FROM order_attached_cells JOIN (SELECT DISTINCT * FROM attached_keys) k USING ({_KEYS})
GROUP BY {MEASURE_CELL}
"""


def attached_keys(rows: list[tuple[str, str, str, Any]]) -> list[tuple[str, str, str, str]]:
    """(tenant, platform, store, order id) of attached events; others name no order."""
    return [(t, p, s, str(o)) for t, p, s, o in rows if o]


async def move_order_attachments(
    conn: asyncpg.Connection, event_keys: list[tuple[str, str, str, str]], lines_moved: bool
) -> None:
    """Recomputes the cells of every order this batch touched: through its lines (the
    ``touched_keys`` of the order-line step) or through an attached event."""
    if not event_keys and not lines_moved:
        return
    # Statements without parameters go together, one round trip for several.
    await conn.execute(
        "CREATE TEMP TABLE IF NOT EXISTS attached_keys "
        "(tenant_id text, platform text, store_id text, order_id text) ON COMMIT DELETE ROWS;"
        # Empty but after an earlier call in the same transaction (a store rebucketed):
        # TRUNCATE would give the table a new file each time, 3 to 4 ms a batch.
        "DELETE FROM attached_keys;"
        # What the orders' old cells take out, kept to drop the cells left holding nothing.
        "CREATE TEMP TABLE IF NOT EXISTS left_cells (LIKE daily_measures) ON COMMIT DELETE ROWS;"
        "DELETE FROM left_cells"
    )
    if event_keys:
        await conn.copy_records_to_table(
            "attached_keys", records=list(set(event_keys)), columns=_KEYS.split(", ")
        )
    # No statistics on a temporary table: the planner would scan events_raw whole.
    await conn.execute(
        (f"INSERT INTO attached_keys SELECT {_KEYS} FROM touched_keys;" if lines_moved else "")
        + "ANALYZE attached_keys"
    )
    left = await conn.execute(
        f"INSERT INTO left_cells ({MEASURE_CELL}, value, facts) {CELLS_SQL.format(sign='-')}"
    )
    await add_measure_cells(conn, f"SELECT {MEASURE_CELL}, value, facts FROM left_cells")
    await conn.execute(
        f"DELETE FROM order_attached_cells c USING attached_keys k "
        f"WHERE ({', '.join('c.' + k for k in _KEYS.split(', '))}) "
        f"= ({', '.join('k.' + k for k in _KEYS.split(', '))})"
    )
    await conn.execute(NEW_CELLS_SQL)
    await add_measure_cells(conn, CELLS_SQL.format(sign=""))
    if row_count(left):
        await drop_emptied_measures(conn, "SELECT * FROM left_cells")
