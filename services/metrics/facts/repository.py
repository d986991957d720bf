"""Applying a batch of facts and moving the rollups with them, in one transaction.

A replaced line takes its old contribution out of ``daily_sales`` and puts its new
one in; the orders it belongs to are recomputed and ``daily_orders`` moves by the
difference between their old and new state. Everything is set-based: one COPY into
a staging table and a handful of statements per batch, whatever its size.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import asyncpg

from services.metrics.facts.measures import Cell, Source, cells_of, net_deltas
from shared.db import row_count
from shared.events import Payload
from shared.time import FALLBACK_TIME_ZONE, MARKETPLACE_TIME_ZONES


def default_zone_sql(marketplace: str) -> str:
    """SQL naming the zone of the marketplace in column ``marketplace`` when its store
    has none of its own: the SQL twin of ``shared.time.marketplace_zone``."""
    cases = " ".join(f"WHEN '{m}' THEN '{z}'" for m, z in MARKETPLACE_TIME_ZONES.items())
    return f"CASE {marketplace} {cases} ELSE '{FALLBACK_TIME_ZONE}' END"


LINE_COLUMNS = (
    "tenant_id",
    "event_id",
    "version",
    "platform",
    "store_id",
    "marketplace",
    "order_id",
    "line_id",
    "sku",
    "category",
    "status",
    "quantity",
    "currency",
    "unit_price",
    "shipping",
    "discount",
    "tax",
    "purchased_at",
    "local_date",
)
RAW_COLUMNS = (
    "tenant_id",
    "event_id",
    "type",
    "version",
    "platform",
    "store_id",
    "marketplace",
    "occurred_at",
    "payload",
)
_DIMS = "tenant_id, local_date, platform, store_id, marketplace, sku, category, currency"
_ORDER_DIMS = "tenant_id, local_date, platform, store_id, marketplace"
_STORE_DIMS = "tenant_id, local_date, platform, store_id, marketplace, currency"
_SKU_ORDER_DIMS = "tenant_id, local_date, platform, store_id, marketplace, sku"
_CATEGORY_ORDER_DIMS = "tenant_id, local_date, platform, store_id, marketplace, category"


# Each table of SKU categories, by its key: the tenant's, and each store's.
_CATEGORY_TABLES = (
    ("sku_categories", "tenant_id, sku"),
    ("store_sku_categories", "tenant_id, platform, store_id, marketplace, sku"),
)

MEASURE_CELL = "tenant_id, local_date, platform, store_id, marketplace, sku, measure, currency"
_STORE_MEASURE_CELL = "tenant_id, local_date, platform, store_id, marketplace, measure, currency"


async def add_measure_cells(conn: asyncpg.Connection, cells_sql: str, *args: Any) -> None:
    """Adds the rows ``cells_sql`` selects (``MEASURE_CELL`` columns, ``value`` and
    ``facts``, each cell at most once) to the per-SKU measures; summed over SKUs, to
    the per-store ones, which answer every question that names no SKU or category; and
    stock, summed over stores, to the SKU-days of ``daily_sku_stock``."""
    await conn.execute(
        f"""
        WITH cells AS ({cells_sql}),
        per_sku AS (
            INSERT INTO daily_measures AS m ({MEASURE_CELL}, value, facts)
            SELECT {MEASURE_CELL}, value, facts FROM cells
            ON CONFLICT (tenant_id, measure, local_date, platform, store_id, marketplace, sku, currency)
            DO UPDATE SET value = m.value + EXCLUDED.value, facts = m.facts + EXCLUDED.facts
        ),
        per_sku_day AS (
            INSERT INTO daily_sku_stock AS s (tenant_id, local_date, sku, on_hand, snapshots)
            SELECT tenant_id, local_date, sku,
                   coalesce(sum(value) FILTER (WHERE measure = 'on_hand'), 0),
                   coalesce(sum(value) FILTER (WHERE measure = 'snapshots'), 0)
            FROM cells WHERE measure IN ('on_hand', 'snapshots')
            GROUP BY tenant_id, local_date, sku
            ON CONFLICT (tenant_id, local_date, sku) DO UPDATE
            SET on_hand = s.on_hand + EXCLUDED.on_hand, snapshots = s.snapshots + EXCLUDED.snapshots
        )
        INSERT INTO daily_store_measures AS m ({_STORE_MEASURE_CELL}, value, facts)
        SELECT {_STORE_MEASURE_CELL}, sum(value), sum(facts)
        FROM cells GROUP BY {_STORE_MEASURE_CELL}
        ON CONFLICT (tenant_id, measure, local_date, platform, store_id, marketplace, currency)
        DO UPDATE SET value = m.value + EXCLUDED.value, facts = m.facts + EXCLUDED.facts
        """,
        *args,
    )


def _arrays(rows: Iterable[tuple[Any, ...]]) -> list[list[Any]]:
    """The columns of ``rows``, as the arrays ``unnest`` takes."""
    return [list(column) for column in zip(*rows, strict=True)]


def _same(columns: str, left: str, right: str) -> str:
    return " AND ".join(f"{left}.{c} = {right}.{c}" for c in columns.split(", "))


async def drop_emptied_measures(conn: asyncpg.Connection, cells_sql: str, *args: Any) -> None:
    """Deletes the measure rows of the cells ``cells_sql`` selects (``MEASURE_CELL``
    columns) that something was just taken out of and that no fact is in any more: a
    group every event left (moved by a new version, or by a store's new time zone) has
    no row. Rows kept before their facts were counted (migration 0025) count one, so
    they go once they also hold zero."""
    await conn.execute(
        f"""
        DELETE FROM daily_measures m USING (SELECT DISTINCT {MEASURE_CELL} FROM ({cells_sql}) x) c
        WHERE {_same(MEASURE_CELL, "m", "c")} AND m.facts <= 0 AND m.value = 0
        """,
        *args,
    )
    await conn.execute(
        f"""
        DELETE FROM daily_store_measures s
        USING (SELECT DISTINCT {_STORE_MEASURE_CELL} FROM ({cells_sql}) x) c
        WHERE {_same(_STORE_MEASURE_CELL, "s", "c")} AND s.facts <= 0 AND s.value = 0
          AND NOT EXISTS (
              SELECT FROM daily_measures m WHERE {_same(_STORE_MEASURE_CELL, "m", "s")}
          )
        """,
        *args,
    )
    # A SKU-day no snapshot is counted in any more (moved to another date or SKU).
    await conn.execute(
        f"""
        DELETE FROM daily_sku_stock s
        USING (
            SELECT DISTINCT tenant_id, local_date, sku FROM ({cells_sql}) x
            WHERE measure = 'snapshots'
        ) c
        WHERE {_same("tenant_id, local_date, sku", "s", "c")} AND s.snapshots = 0
        """,
        *args,
    )


class FactRepository:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def apply_order_lines(self, rows: list[tuple[Any, ...]]) -> int:
        """Stores new lines and higher versions; returns how many were applied."""
        if not rows:
            return 0
        # Statements without parameters go together, one round trip for several: a
        # batch's fixed cost is mostly round trips, and it decides freshness under load.
        await self.conn.execute(
            "CREATE TEMP TABLE IF NOT EXISTS incoming_lines "
            "(LIKE order_lines INCLUDING DEFAULTS) ON COMMIT DELETE ROWS;"
            "CREATE TEMP TABLE IF NOT EXISTS replaced_lines "
            "(LIKE order_lines INCLUDING DEFAULTS) ON COMMIT DELETE ROWS;"
            "CREATE TEMP TABLE IF NOT EXISTS applied_lines "
            "(LIKE order_lines INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
        )
        await self.conn.copy_records_to_table("incoming_lines", records=rows, columns=LINE_COLUMNS)
        # The old state of every line about to be replaced, before it is overwritten (the
        # status, so the count, is the last statement's).
        replaced = await self.conn.execute(
            """
            ANALYZE incoming_lines;  -- see _move_orders
            INSERT INTO replaced_lines
            SELECT o.* FROM order_lines o
            JOIN incoming_lines i USING (tenant_id, event_id)
            WHERE i.version > o.version
            """
        )
        columns = ", ".join(LINE_COLUMNS)
        updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in LINE_COLUMNS[2:])
        status = await self.conn.execute(
            f"""
            WITH upserted AS (
                INSERT INTO order_lines AS o ({columns})
                SELECT {columns} FROM incoming_lines
                ON CONFLICT (tenant_id, event_id) DO UPDATE SET {updates}
                WHERE o.version < EXCLUDED.version
                RETURNING o.*
            )
            INSERT INTO applied_lines SELECT * FROM upserted
            """
        )
        applied = row_count(status)
        if applied == 0:
            return 0
        for table, dims in (("daily_sales", _DIMS), ("daily_store_sales", _STORE_DIMS)):
            await self.conn.execute(
                f"""
                INSERT INTO {table} AS d ({dims}, gross, shipping, discount, tax, units, lines)
                SELECT {dims},
                       sum(sign * quantity * unit_price), sum(sign * shipping),
                       sum(sign * discount), sum(sign * tax), sum(sign * quantity), sum(sign)
                FROM (
                    SELECT 1 AS sign, * FROM applied_lines WHERE status <> 'cancelled'
                    UNION ALL
                    SELECT -1 AS sign, * FROM replaced_lines WHERE status <> 'cancelled'
                ) moved
                GROUP BY {dims}
                ON CONFLICT ({dims}) DO UPDATE SET
                    gross = d.gross + EXCLUDED.gross,
                    shipping = d.shipping + EXCLUDED.shipping,
                    discount = d.discount + EXCLUDED.discount,
                    tax = d.tax + EXCLUDED.tax,
                    units = d.units + EXCLUDED.units,
                    lines = d.lines + EXCLUDED.lines
                """
            )
            if row_count(replaced):
                await self._drop_emptied(
                    table,
                    dims,
                    "SELECT * FROM replaced_lines WHERE status <> 'cancelled'",
                    "d.lines = 0 AND d.units = 0 AND d.gross = 0 AND d.shipping = 0 "
                    "AND d.discount = 0 AND d.tax = 0",
                )
        await self._move_orders()
        await self._categorize_skus(moved=row_count(replaced) > 0)
        return applied

    async def _categorize_skus(self, moved: bool) -> None:
        """The category a SKU's newest line names (by purchase time, then event id) is the
        SKU's category, in the tenant and in each store (for questions narrowed to stores:
        kpis' ``_measures_source``). New lines can only take a SKU's name over; a new
        version that moves a categorized line away (another SKU, store or purchase time,
        or no category) may hand it back to an older line, so those SKUs are looked up
        again in their lines."""
        for table, keys in _CATEGORY_TABLES:
            await self.conn.execute(
                f"""
                INSERT INTO {table} AS c ({keys}, category, seen_at, event_id)
                SELECT DISTINCT ON ({keys}) {keys}, category, purchased_at, event_id
                FROM applied_lines WHERE category <> ''
                ORDER BY {keys}, purchased_at DESC, event_id DESC
                ON CONFLICT ({keys}) DO UPDATE
                SET category = EXCLUDED.category, seen_at = EXCLUDED.seen_at,
                    event_id = EXCLUDED.event_id
                WHERE (c.seen_at, c.event_id) <= (EXCLUDED.seen_at, EXCLUDED.event_id)
                """
            )
            if not moved:
                continue
            await self.conn.execute(
                f"""
                WITH left_keys AS (
                    SELECT DISTINCT {", ".join(f"r.{k}" for k in keys.split(", "))}
                    FROM replaced_lines r JOIN applied_lines a USING (tenant_id, event_id)
                    WHERE r.category <> ''
                      AND (r.sku, r.category, r.platform, r.store_id, r.marketplace,
                           r.purchased_at)
                          IS DISTINCT FROM (a.sku, a.category, a.platform, a.store_id,
                                            a.marketplace, a.purchased_at)
                ),
                newest AS (
                    SELECT k.*, n.category, n.purchased_at, n.event_id
                    FROM left_keys k LEFT JOIN LATERAL (
                        SELECT l.category, l.purchased_at, l.event_id FROM order_lines l
                        WHERE {_same(keys, "l", "k")} AND l.category <> ''
                        ORDER BY l.purchased_at DESC, l.event_id DESC
                        LIMIT 1
                    ) n ON true
                ),
                uncategorized AS (
                    DELETE FROM {table} c USING newest n
                    WHERE {_same(keys, "c", "n")} AND n.category IS NULL
                )
                INSERT INTO {table} AS c ({keys}, category, seen_at, event_id)
                SELECT {keys}, category, purchased_at, event_id
                FROM newest WHERE category IS NOT NULL
                ON CONFLICT ({keys}) DO UPDATE
                SET category = EXCLUDED.category, seen_at = EXCLUDED.seen_at,
                    event_id = EXCLUDED.event_id
                """
            )

    async def _move_orders(self) -> None:
        # Every order a line of this batch is in now, or was in before it was replaced.
        await self.touch_orders(
            """
            SELECT tenant_id, platform, store_id, order_id FROM applied_lines
            UNION
            SELECT tenant_id, platform, store_id, order_id FROM replaced_lines
            """
        )

    async def touch_orders(self, keys_sql: str, *args: Any) -> None:
        """Recomputes the orders ``keys_sql`` selects (tenant, platform, store, order id)
        from their lines and moves the daily, per-SKU and per-category order counts by the
        difference. The keys stay in ``touched_keys`` until the transaction ends."""
        await self.conn.execute(
            "CREATE TEMP TABLE IF NOT EXISTS touched_keys "
            "(tenant_id text, platform text, store_id text, order_id text) ON COMMIT DELETE ROWS;"
            "CREATE TEMP TABLE IF NOT EXISTS touched_orders "
            "(LIKE orders INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
        )
        await self.conn.execute(f"INSERT INTO touched_keys {keys_sql}", *args)
        # A temporary table has no statistics: without them the planner takes it for
        # hundreds of rows and scans orders and order_skus whole instead of probing them.
        # Then their old state, which leaves the daily counts (the status, so the count,
        # is the last statement's).
        known = await self.conn.execute(
            """
            ANALYZE touched_keys;
            INSERT INTO touched_orders
            SELECT o.* FROM orders o JOIN touched_keys USING (tenant_id, platform, store_id, order_id)
            """
        )
        await self.conn.execute(
            """
            DELETE FROM orders o USING touched_keys k
            WHERE o.tenant_id = k.tenant_id AND o.platform = k.platform
              AND o.store_id = k.store_id AND o.order_id = k.order_id
            """
        )
        # Their new state, from the lines they have now: dated by their earliest line. An
        # order left with no line at all is gone.
        await self.conn.execute(
            """
            INSERT INTO orders
                (tenant_id, platform, store_id, order_id, marketplace, order_date, live_lines, lines)
            SELECT l.tenant_id, l.platform, l.store_id, l.order_id,
                   (array_agg(l.marketplace ORDER BY l.purchased_at, l.event_id))[1],
                   (array_agg(l.local_date ORDER BY l.purchased_at, l.event_id))[1],
                   count(*) FILTER (WHERE l.status <> 'cancelled'),
                   count(*)
            FROM order_lines l
            JOIN touched_keys USING (tenant_id, platform, store_id, order_id)
            GROUP BY l.tenant_id, l.platform, l.store_id, l.order_id
            """
        )
        await self.conn.execute(
            f"""
            INSERT INTO daily_orders AS d ({_ORDER_DIMS}, orders, orders_all)
            SELECT {_ORDER_DIMS}, sum(sign * (live_lines > 0)::int), sum(sign)
            FROM (
                SELECT 1 AS sign, o.tenant_id, o.order_date AS local_date, o.platform,
                       o.store_id, o.marketplace, o.live_lines
                FROM orders o JOIN touched_keys USING (tenant_id, platform, store_id, order_id)
                UNION ALL
                SELECT -1, tenant_id, order_date, platform, store_id, marketplace, live_lines
                FROM touched_orders
            ) moved
            GROUP BY {_ORDER_DIMS}
            ON CONFLICT ({_ORDER_DIMS}) DO UPDATE SET
                orders = d.orders + EXCLUDED.orders,
                orders_all = d.orders_all + EXCLUDED.orders_all
            """
        )
        if row_count(known):
            await self._drop_emptied(
                "daily_orders",
                _ORDER_DIMS,
                "SELECT tenant_id, order_date AS local_date, platform, store_id, marketplace "
                "FROM touched_orders",
                "d.orders = 0 AND d.orders_all = 0",
            )
        await self._move_sku_orders()

    async def _move_sku_orders(self) -> None:
        # The touched orders' SKUs leave the per-SKU and per-category counts as they were
        # and come back as the orders' lines now have them: both sides gathered once.
        # ``live``: a line of the SKU is; ``order_live``: a line of the order is, so the
        # order is not cancelled (CONTRACT §4), whatever became of this SKU's lines.
        left = await self.conn.execute(
            "CREATE TEMP TABLE IF NOT EXISTS moved_order_skus (sign int, tenant_id text, "
            "local_date date, platform text, store_id text, marketplace text, order_id text, "
            "sku text, category text, live boolean, order_live boolean) ON COMMIT DELETE ROWS;"
            """
            WITH old AS (
                DELETE FROM order_skus s USING touched_keys k
                WHERE s.tenant_id = k.tenant_id AND s.platform = k.platform
                  AND s.store_id = k.store_id AND s.order_id = k.order_id
                RETURNING s.*
            )
            INSERT INTO moved_order_skus
            SELECT -1, tenant_id, order_date, platform, store_id, marketplace, order_id, sku,
                   category, live, order_live
            FROM old
            """
        )
        await self.conn.execute(
            """
            WITH new AS (
                INSERT INTO order_skus (tenant_id, platform, store_id, order_id, sku,
                                        marketplace, order_date, live, category, order_live)
                SELECT l.tenant_id, l.platform, l.store_id, l.order_id, l.sku, o.marketplace,
                       o.order_date, bool_or(l.status <> 'cancelled'), l.category,
                       o.live_lines > 0
                FROM order_lines l
                JOIN touched_keys USING (tenant_id, platform, store_id, order_id)
                JOIN orders o USING (tenant_id, platform, store_id, order_id)
                GROUP BY l.tenant_id, l.platform, l.store_id, l.order_id, l.sku, l.category,
                         o.marketplace, o.order_date, o.live_lines
                RETURNING *
            )
            INSERT INTO moved_order_skus
            SELECT 1, tenant_id, order_date, platform, store_id, marketplace, order_id, sku,
                   category, live, order_live
            FROM new
            """
        )
        # An order counts once under each SKU and each category it holds, however many
        # lines (a SKU may come under two categories, a category hold several SKUs).
        for table, dims in (
            ("daily_sku_orders", _SKU_ORDER_DIMS),
            ("daily_category_orders", _CATEGORY_ORDER_DIMS),
        ):
            await self.conn.execute(
                f"""
                INSERT INTO {table} AS d ({dims}, orders, orders_all, cancelled)
                SELECT {dims}, sum(sign * live::int), sum(sign), sum(sign * (NOT order_live)::int)
                FROM (
                    SELECT sign, {dims}, order_id, bool_or(live) AS live,
                           bool_or(order_live) AS order_live
                    FROM moved_order_skus
                    GROUP BY sign, {dims}, order_id
                ) per_order
                GROUP BY {dims}
                ON CONFLICT ({dims}) DO UPDATE SET
                    orders = d.orders + EXCLUDED.orders,
                    orders_all = d.orders_all + EXCLUDED.orders_all,
                    cancelled = d.cancelled + EXCLUDED.cancelled
                """
            )
            if row_count(left):
                await self._drop_emptied(
                    table,
                    dims,
                    "SELECT * FROM moved_order_skus WHERE sign = -1",
                    "d.orders = 0 AND d.orders_all = 0 AND d.cancelled = 0",
                )

    async def _drop_emptied(self, table: str, dims: str, left_sql: str, empty: str) -> None:
        """Deletes the rows of ``table`` that the rows of ``left_sql`` (``dims`` columns)
        were taken out of and that hold nothing now: a group every fact left (moved by a
        new version to another store, day or SKU) has no row, as if it never had one."""
        await self.conn.execute(
            f"DELETE FROM {table} d USING (SELECT DISTINCT {dims} FROM ({left_sql}) s) l "
            f"WHERE {_same(dims, 'd', 'l')} AND {empty}"
        )

    async def kept_versions(self, keys: set[tuple[str, str]]) -> dict[tuple[str, str], int]:
        """The version kept of each (tenant, event id) of ``keys`` that has one."""
        rows = await self.conn.fetch(
            """
            SELECT k.tenant_id, k.event_id, greatest(o.version, r.version) AS version
            FROM unnest($1::text[], $2::text[]) AS k(tenant_id, event_id)
            LEFT JOIN order_lines o ON o.tenant_id = k.tenant_id AND o.event_id = k.event_id
            LEFT JOIN events_raw r ON r.tenant_id = k.tenant_id AND r.event_id = k.event_id
            WHERE o.version IS NOT NULL OR r.version IS NOT NULL
            """,
            *_arrays(keys),
        )
        return {(row["tenant_id"], row["event_id"]): row["version"] for row in rows}

    async def replaced_raw(self, rows: list[tuple[Any, ...]]) -> list[asyncpg.Record]:
        """The kept events that ``rows`` (in ``RAW_COLUMNS`` order) replace, as they are
        before ``store_raw`` overwrites them."""
        if not rows:
            return []
        arrays = _arrays(rows)
        replaced: list[asyncpg.Record] = await self.conn.fetch(
            """
            SELECT r.* FROM events_raw r
            JOIN unnest($1::text[], $2::text[], $3::int[]) AS i(tenant_id, event_id, version)
            USING (tenant_id, event_id)
            WHERE i.version > r.version
            """,
            arrays[0],
            arrays[1],
            arrays[3],
        )
        return replaced

    async def store_raw(self, rows: list[tuple[Any, ...]]) -> set[tuple[str, str]]:
        """Keeps the other event types as received, the highest version of each.

        Returns the (tenant, event id) pairs that changed something.
        """
        if not rows:
            return set()
        columns = ", ".join(RAW_COLUMNS)
        updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in RAW_COLUMNS[2:])
        applied = await self.conn.fetch(
            f"""
            INSERT INTO events_raw AS r ({columns})
            SELECT * FROM unnest(
                $1::text[], $2::text[], $3::text[], $4::int[], $5::text[], $6::text[],
                $7::text[], $8::timestamptz[], $9::jsonb[]
            )
            ON CONFLICT (tenant_id, event_id) DO UPDATE SET {updates}
            WHERE r.version < EXCLUDED.version
            RETURNING tenant_id, event_id
            """,
            *_arrays(rows),
        )
        return {(row["tenant_id"], row["event_id"]) for row in applied}

    async def latest_snapshots(self, keys: set[tuple[str, ...]]) -> list[asyncpg.Record]:
        """Of each (tenant, platform, store, SKU, warehouse, date), the kept inventory
        snapshot taken last (``occurred_at``, then the greater event id): a warehouse's
        stock on a date, which an earlier snapshot of it does not add to, whatever
        marketplace either names (for stock a store is its platform and id)."""
        if not keys:
            return []
        rows: list[asyncpg.Record] = await self.conn.fetch(
            """
            SELECT DISTINCT ON (r.tenant_id, r.platform, r.store_id, k.sku, k.warehouse, k.day)
                   r.tenant_id, r.platform, r.store_id, r.marketplace, r.type, r.payload
            FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                        $6::text[])
                 AS k(tenant_id, platform, store_id, sku, warehouse, day)
            JOIN events_raw r
              ON r.type = 'inventory_snapshot' AND r.tenant_id = k.tenant_id
             AND r.platform = k.platform AND r.store_id = k.store_id
             AND r.payload->>'sku' = k.sku AND r.payload->>'warehouse' = k.warehouse
             AND r.payload->>'date' = k.day
            ORDER BY r.tenant_id, r.platform, r.store_id, k.sku, k.warehouse, k.day,
                     r.occurred_at DESC, r.event_id DESC
            """,
            *_arrays(keys),
        )
        return rows

    async def move_measures(
        self, added: list[tuple[Source, Payload]], removed: list[tuple[Source, Payload]]
    ) -> None:
        """Moves the measure cells from the ``removed`` events to the ``added`` ones, and
        drops the rows that no event is left in."""
        await self._add_measures(net_deltas(added, removed))
        await self._drop_emptied_measures(cells_of(removed))

    async def _drop_emptied_measures(self, cells: Iterable[Cell]) -> None:
        """See ``drop_emptied_measures``: ``cells`` are those something left."""
        unique = sorted(set(cells))
        if not unique:
            return
        await drop_emptied_measures(
            self.conn,
            f"""
            SELECT * FROM unnest(
                $1::text[], $2::date[], $3::text[], $4::text[], $5::text[], $6::text[],
                $7::text[], $8::text[]
            ) AS c({MEASURE_CELL})
            """,
            *_arrays(unique),
        )

    async def _add_measures(self, deltas: list[tuple[Any, ...]]) -> None:
        """Rows (cell..., delta, facts delta), each cell once: see ``add_measure_cells``."""
        if not deltas:
            return
        await add_measure_cells(
            self.conn,
            f"""
            SELECT * FROM unnest(
                $1::text[], $2::date[], $3::text[], $4::text[], $5::text[], $6::text[],
                $7::text[], $8::text[], $9::numeric[], $10::bigint[]
            ) AS c({MEASURE_CELL}, value, facts)
            """,
            *_arrays(deltas),
        )

    async def upsert_fx_rates(self, rows: list[tuple[Any, ...]]) -> None:
        """(tenant, event id, date, base, quote, rate, ingested at): a newer version
        overwrites its row."""
        if not rows:
            return
        await self.conn.execute(
            """
            INSERT INTO fx_rates AS f (tenant_id, event_id, rate_date, base, quote, rate, ingested_at)
            SELECT * FROM unnest(
                $1::text[], $2::text[], $3::date[], $4::text[], $5::text[], $6::numeric[],
                $7::timestamptz[]
            )
            ON CONFLICT (tenant_id, event_id) DO UPDATE SET
                rate_date = EXCLUDED.rate_date, base = EXCLUDED.base,
                quote = EXCLUDED.quote, rate = EXCLUDED.rate, ingested_at = EXCLUDED.ingested_at
            """,
            *_arrays(rows),
        )

    async def upsert_unit_costs(self, rows: list[tuple[Any, ...]]) -> None:
        """(tenant, event id, sku, effective_from, cost, currency, platform, store,
        ingested at): a newer version overwrites its row."""
        if not rows:
            return
        await self.conn.execute(
            """
            INSERT INTO unit_costs AS u
                (tenant_id, event_id, sku, effective_from, cost, currency, platform, store_id,
                 ingested_at)
            SELECT * FROM unnest(
                $1::text[], $2::text[], $3::text[], $4::date[], $5::numeric[], $6::text[],
                $7::text[], $8::text[], $9::timestamptz[]
            )
            ON CONFLICT (tenant_id, event_id) DO UPDATE SET
                sku = EXCLUDED.sku, effective_from = EXCLUDED.effective_from,
                cost = EXCLUDED.cost, currency = EXCLUDED.currency,
                platform = EXCLUDED.platform, store_id = EXCLUDED.store_id,
                ingested_at = EXCLUDED.ingested_at
            """,
            *_arrays(rows),
        )

    async def track_open_shipments(
        self, still_open: list[tuple[Any, ...]], applied: list[tuple[str, str]]
    ) -> None:
        """Of the shipments ``applied`` (tenant, event id), keeps those ``still_open``
        (tenant, event id, platform, store, marketplace, promised_ship_by): a newer
        version that ships or cancels one takes it out."""
        if not applied:
            return
        await self.conn.execute(
            """
            DELETE FROM open_shipments o
            USING unnest($1::text[], $2::text[]) AS a(tenant_id, event_id)
            WHERE o.tenant_id = a.tenant_id AND o.event_id = a.event_id
            """,
            *_arrays(applied),
        )
        if still_open:
            await self.conn.execute(
                """
                INSERT INTO open_shipments
                    (tenant_id, event_id, platform, store_id, marketplace, promised_ship_by)
                SELECT * FROM unnest(
                    $1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                    $6::timestamptz[]
                )
                """,
                *_arrays(still_open),
            )
