"""Reading the daily rollups, grouped by period and dimensions, converted in SQL.

Money is converted row by row with the factor of its own local date (passed in as the
currencies and one text of every day's factor for each), then summed; a bucket with
any amount that has no factor is null. Queries never read the raw facts.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import asyncpg

# Dimension names of the API and their columns in the rollups.
COLUMNS = {
    "platform": "platform",
    "store": "store_id",
    "marketplace": "marketplace",
    "sku": "sku",
    "category": "category",
}


# The sales rollups' sums, by the name the engine reads them under.
SALES_SUMS = {
    "gmv": "gross + shipping - discount",
    "units": "units",
}


def _sales_table(grouping: Grouping) -> str:
    # Without SKU or category the per-store rollup answers: a few rows a day.
    by_sku = any(d in ("sku", "category") for d in [*grouping.group_by, *grouping.filters])
    return "daily_sales" if by_sku else "daily_store_sales"


@dataclass(frozen=True)
class Grouping:
    tenant_id: str
    start: date
    end: date
    grain: str
    group_by: list[str]
    filters: dict[str, list[str]]
    target: str
    # Conversion factors to ``target`` of each currency, in this order, on every day
    # from ``start`` to ``end``, as ``_FX_TABLE`` reads them: comma-separated, empty
    # for a missing rate. asyncpg sends a numeric array in binary at about 4 µs an
    # element (three years of three currencies: 10 ms a query); PostgreSQL parses the
    # same factors from text in a fraction of that.
    fx_currencies: list[str]
    fx_factors_text: str
    # Whether some currency lacks a rate on some day of the range.
    rates_missing: bool = False


def _period(grain: str, alias: str) -> str:
    if grain == "total":
        return "'TOTAL'"
    if grain == "day":
        return f"to_char({alias}.local_date, 'YYYY-MM-DD')"
    return f"to_char(date_trunc('{grain}', {alias}.local_date), 'YYYY-MM-DD')"


def _factor(alias: str) -> str:
    # Counts ('') and amounts already in the target currency need no rate.
    return f"CASE WHEN {alias}.currency IN ('', $4) THEN 1 ELSE fx.factor END"


def _converted(expression: str, alias: str) -> str:
    # A zero needs no rate: a cell a new version emptied (the refund moved to another
    # day, the line to another currency) must not make its bucket null.
    factor = _factor(alias)
    return (
        f"CASE WHEN bool_or(({factor}) IS NULL AND ({expression}) <> 0) THEN NULL "
        f"ELSE coalesce(sum(({expression}) * ({factor})), 0) END"
    )


# Every currency's factor on every day of $2..$3, from the currencies ($5) and the text
# of their factors ($6, ``Grouping.fx_factors_text``): the n-th factor is of currency
# (n - 1) div days, on day (n - 1) mod days of the range.
_FX_TABLE = """(
    SELECT ($5::text[])[(x.n - 1) / ($3::date - $2::date + 1) + 1] AS currency,
           $2::date + ((x.n - 1) % ($3::date - $2::date + 1))::int AS d,
           NULLIF(x.factor, '')::numeric AS factor
    FROM unnest(string_to_array($6::text, ',')) WITH ORDINALITY AS x(factor, n)
) AS fx"""

# Amounts already in the target currency ($4) need no factor, so they join none; the
# condition also types $4 for queries that convert no column (units alone).
_FX_JOIN = (
    f"LEFT JOIN {_FX_TABLE} "
    "ON fx.currency = {alias}.currency AND fx.d = {alias}.local_date "
    "AND {alias}.currency <> $4::text"
)


# $1-$3 tenant and dates, $4-$6 the conversion: the first parameter after them.
FILTERS_AFTER_FX = 7


def _measures_source(
    grouping: Grouping,
    alias: str,
    first_filter: int,
    per_sku: bool = False,
    table: str = "daily_measures",
) -> str:
    """The measures a query reads: per store unless it names SKUs or categories (or
    ``per_sku``), and then (from ``table``, kept by SKU) with each row's SKU's category
    when it needs it (a SKU's category is the one its newest order line names).

    The query's filters are its parameters from ``first_filter`` on, in order; $1 is
    the tenant."""
    named = {*grouping.group_by, *grouping.filters}
    if not per_sku and not named & {"sku", "category"}:
        return f"daily_store_measures {alias}"
    if "category" not in named:
        return f"{table} {alias}"
    # Narrowed to stores (as a caller limited to some always is), the newest line of
    # the stores asked about names the category: no other store's line lends its name.
    narrowing, _ = _filter_clauses(
        grouping.filters, first_filter, "c", only=("platform", "store", "marketplace")
    )
    categories, keys = "sku_categories", "tenant_id, sku"
    if narrowing:
        keys = "sku"
        categories = f"""(
            SELECT DISTINCT ON (sku) sku, category FROM store_sku_categories c
            WHERE c.tenant_id = $1 {narrowing}
            ORDER BY sku, seen_at DESC, event_id DESC
        )"""
    return f"""(
        SELECT dm.*, coalesce(c.category, '') AS category
        FROM {table} dm LEFT JOIN {categories} c USING ({keys})
    ) AS {alias}"""


def orders_source(group_by: list[str], filters: dict[str, list[str]]) -> str:
    """The table in which an order has at most one row per group, so summing counts it once.

    An order has a row per SKU it holds in ``daily_sku_orders`` and a row per category
    in ``daily_category_orders``. Several SKUs (or categories) neither grouped by nor
    narrowed to one could give an order several rows in a group, and so could SKUs and
    categories named together (an order may hold a SKU under two categories): those
    orders are counted distinct from ``order_skus``, a row per SKU and category.
    """

    def one_per_order(dimension: str) -> bool:
        return dimension in group_by or len(filters.get(dimension, [])) == 1

    named = {*group_by, *filters}
    if {"sku", "category"} <= named:
        return "order_skus"
    if one_per_order("sku"):
        return "daily_sku_orders"
    if one_per_order("category"):
        return "daily_category_orders"
    if named & {"sku", "category"}:
        return "order_skus"
    return "daily_orders"


def _filter_clauses(
    filters: dict[str, list[str]],
    first: int,
    alias: str = "",
    only: Collection[str] | None = None,
) -> tuple[str, list[Any]]:
    """``AND <column> = ANY($n)`` for each filter (of the dimensions ``only`` names,
    when given), its parameters numbered from ``first`` in the order of ``filters``, and
    the values to pass for them all."""
    prefix = f"{alias}." if alias else ""
    sql = " ".join(
        f"AND {prefix}{COLUMNS[dimension]} = ANY(${position}::text[])"
        for position, dimension in enumerate(filters, start=first)
        if only is None or dimension in only
    )
    return sql, list(filters.values())


class RollupRepository:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def _fetch(
        self,
        grouping: Grouping,
        alias: str,
        measures: str,
        source: str,
        extra: str = "",
        more: tuple[Any, ...] = (),
        converts: bool = True,
        group_extra: str = "",
        around: str = "{}",
    ) -> list[asyncpg.Record]:
        """$1-$3 tenant and dates; $4-$6 target and factors when ``converts``; then ``more``.
        The query is put into ``around`` where it says ``{}``."""
        fx_args: list[Any] = (
            [grouping.target, grouping.fx_currencies, grouping.fx_factors_text] if converts else []
        )
        dims = [f"{alias}.{COLUMNS[d]}" for d in grouping.group_by]
        select_dims = "".join(f", {c} AS {d}" for c, d in zip(dims, grouping.group_by, strict=True))
        group_dims = "".join(f", {c}" for c in dims)
        clauses, args = _filter_clauses(grouping.filters, 4 + len(fx_args) + len(more), alias)
        query = f"""
            SELECT {_period(grouping.grain, alias)} AS period{select_dims}, {measures}
            FROM {source}
            WHERE {alias}.tenant_id = $1 AND {alias}.local_date BETWEEN $2 AND $3 {extra} {clauses}
            GROUP BY 1{group_dims}{group_extra}
            """
        rows: list[asyncpg.Record] = await self.conn.fetch(
            around.format(query),
            grouping.tenant_id,
            grouping.start,
            grouping.end,
            *fx_args,
            *more,
            *args,
        )
        return rows

    async def _summed_then_converted(
        self,
        grouping: Grouping,
        table: str,
        sums: dict[str, str],
        money: set[str],
        keep: list[str] | None = None,
        extra: str = "",
        more: tuple[Any, ...] = (),
    ) -> list[asyncpg.Record]:
        """Sums per local day and currency first (a small set), then converts each day
        with its own factor and sums again by period: without SKUs, conversion never
        touches the rollup rows one by one."""
        keep = keep or []
        dims = [COLUMNS[d] for d in grouping.group_by]
        inner_cols = "".join(f", {c}" for c in [*dims, *keep])
        clauses, filter_args = _filter_clauses(grouping.filters, FILTERS_AFTER_FX + len(more))
        # By SKU a day holds about one rollup row per SKU and currency: summing them
        # first would only add a sort, so then each row is converted as it is. Unless a
        # rate is missing: a fee and its credit in two stores sum to zero, which needs
        # no rate, where each alone would make the SKU's value null.
        presum = "sku" not in dims or grouping.rates_missing
        inner_sums = ", ".join(
            f"sum({expression}) AS {name}" if presum else f"{expression} AS {name}"
            for name, expression in sums.items()
        )
        inner_group = f"GROUP BY local_date, currency{inner_cols}" if presum else ""
        outer_dims = "".join(
            f", b.{c} AS {d}" for c, d in zip(dims, grouping.group_by, strict=True)
        )
        outer_keep = "".join(f", b.{c} AS {c}" for c in keep)
        outer_sums = ", ".join(
            _converted(f"b.{name}", "b") + f" AS {name}"
            if name in money
            else f"sum(b.{name}) AS {name}"
            for name in sums
        )
        rows: list[asyncpg.Record] = await self.conn.fetch(
            f"""
            SELECT {_period(grouping.grain, "b")} AS period{outer_dims}{outer_keep}, {outer_sums}
            FROM (
                SELECT local_date, currency{inner_cols}, {inner_sums}
                FROM {table}
                WHERE tenant_id = $1 AND local_date BETWEEN $2 AND $3 {extra} {clauses}
                {inner_group}
            ) b
            {_FX_JOIN.format(alias="b")}
            GROUP BY 1{"".join(f", b.{c}" for c in [*dims, *keep])}
            """,
            grouping.tenant_id,
            grouping.start,
            grouping.end,
            grouping.target,
            grouping.fx_currencies,
            grouping.fx_factors_text,
            *more,
            *filter_args,
        )
        return rows

    async def sales(self, grouping: Grouping, sums: dict[str, str]) -> list[asyncpg.Record]:
        """The ``sums`` of live lines' rollups (name: expression of their columns), each
        money one (all but units) converted: a sum of products per row."""
        return await self._summed_then_converted(
            grouping,
            _sales_table(grouping),
            sums,
            money=set(sums) - {"units"},
        )

    async def cogs(self, grouping: Grouping) -> list[asyncpg.Record]:
        """Units times the unit cost in effect on each purchase day, converted at that
        day's rate; the SKUs without a cost, and the costs' currencies and days without a
        rate (``currency date``), that leave it null."""
        factor = "CASE WHEN uc.currency = $4 THEN 1 ELSE fx.factor END"
        return await self._fetch(
            grouping,
            "s",
            # A cost of zero needs no rate, as a zero amount does (``_converted``).
            "CASE WHEN bool_or(uc.cost IS NULL "
            f"OR (({factor}) IS NULL AND uc.cost <> 0)) THEN NULL "
            f"ELSE sum(s.units * uc.cost * coalesce(({factor}), 0)) END AS cogs, "
            "array_agg(DISTINCT s.sku) FILTER (WHERE uc.cost IS NULL) AS skus_without_cost, "
            "array_agg(DISTINCT uc.currency || ' ' || to_char(s.local_date, 'YYYY-MM-DD')) "
            f"FILTER (WHERE uc.cost <> 0 AND ({factor}) IS NULL) AS costs_without_rate",
            """daily_sales s
            LEFT JOIN LATERAL (
                SELECT u.cost, u.currency FROM unit_costs u
                WHERE u.tenant_id = s.tenant_id AND u.sku = s.sku AND u.effective_from <= s.local_date
                -- The store's own cost first (a store is its id, as in every question,
                -- whatever platform pushed the cost); without one, the tenant's newest;
                -- of two from one day, the one pushed last.
                ORDER BY u.store_id IS NOT DISTINCT FROM s.store_id DESC,
                         u.effective_from DESC, u.ingested_at DESC NULLS LAST, u.event_id DESC
                LIMIT 1
            ) uc ON true
            LEFT JOIN """
            + _FX_TABLE
            + " ON fx.currency = uc.currency AND fx.d = s.local_date",
            "AND s.units <> 0",
        )

    async def orders(self, grouping: Grouping) -> list[asyncpg.Record]:
        """Orders (with a live line in the group), all orders placed and those cancelled
        whole (every line of the order, CONTRACT §4), each counted once per group."""
        source = orders_source(grouping.group_by, grouping.filters)
        if source == "order_skus":
            # Orders holding any of several SKUs or categories: one row per order and
            # group first (hashed: far cheaper than count(DISTINCT), which sorts), then
            # counted.
            dims = "".join(f", {d}" for d in grouping.group_by)
            return await self._fetch(
                grouping,
                "o",
                "bool_or(o.live) AS live, bool_or(o.order_live) AS order_live",
                "(SELECT *, order_date AS local_date FROM order_skus) o",
                converts=False,
                group_extra=", o.platform, o.store_id, o.order_id",
                around=f"""
                    SELECT period{dims}, count(*) FILTER (WHERE live) AS orders,
                           count(*) AS orders_all,
                           count(*) FILTER (WHERE NOT order_live) AS orders_cancelled
                    FROM ({{}}) per_order GROUP BY period{dims}""",
            )
        # An order of the whole store is cancelled when it has no live line at all.
        cancelled = "o.orders_all - o.orders" if source == "daily_orders" else "o.cancelled"
        return await self._fetch(
            grouping,
            "o",
            "sum(o.orders) AS orders, sum(o.orders_all) AS orders_all, "
            f"sum({cancelled}) AS orders_cancelled",
            f"{source} o",
            converts=False,
        )

    async def measures(self, grouping: Grouping, names: list[str]) -> list[asyncpg.Record]:
        """One row per bucket and measure: its converted sum."""
        more = (names,)
        return await self._summed_then_converted(
            grouping,
            _measures_source(grouping, "m", FILTERS_AFTER_FX + len(more)),
            {"value": "value"},
            money={"value"},
            keep=["measure"],
            extra=f"AND measure = ANY(${FILTERS_AFTER_FX}::text[])",
            more=more,
        )

    async def inventory(self, grouping: Grouping) -> list[asyncpg.Record]:
        """Per bucket: units on hand on its last snapshot day (``on_hand_last``), SKU-days
        snapshotted (``sku_days``) and of them out of stock (``stockout_sku_days``).

        A SKU-day is one SKU on one local date within the bucket's group, its stock added
        up over every warehouse, store and marketplace the group holds: one warehouse
        empty under US and another full under MX is a SKU-day in stock, unless the
        answer is grouped by marketplace (or store), where each is its own SKU-day."""
        first_filter = 4  # after the tenant and the dates
        clauses, args = _filter_clauses(grouping.filters, first_filter)
        dims = [COLUMNS[d] for d in grouping.group_by]
        select_dims = "".join(f", {c} AS {d}" for c, d in zip(dims, grouping.group_by, strict=True))
        named = "".join(f", {d}" for d in grouping.group_by)
        if {"platform", "store", "marketplace"} & {*grouping.group_by, *grouping.filters}:
            sql = self._stock_of_stores(grouping, first_filter, clauses, select_dims, named)
        else:
            # Kept paired by SKU-day over every store: a row is a SKU-day.
            source = _measures_source(
                grouping, "m", first_filter, per_sku=True, table="daily_sku_stock"
            )
            sql = f"""
            WITH days AS (
                SELECT m.local_date{select_dims}, count(*) AS sku_days,
                       count(*) FILTER (WHERE m.on_hand = 0) AS stockout_sku_days,
                       sum(m.on_hand) AS on_hand
                FROM {source}
                WHERE tenant_id = $1 AND local_date BETWEEN $2 AND $3 AND snapshots > 0
                      {clauses}
                GROUP BY m.local_date{named}
            )
            SELECT {_period(grouping.grain, "d")} AS period{named},
                   sum(sku_days) AS sku_days, sum(stockout_sku_days) AS stockout_sku_days,
                   (array_agg(on_hand ORDER BY local_date DESC))[1] AS on_hand_last
            FROM days d GROUP BY period{named}
            """
        rows: list[asyncpg.Record] = await self.conn.fetch(
            sql, grouping.tenant_id, grouping.start, grouping.end, *args
        )
        return rows

    @staticmethod
    def _stock_of_stores(
        grouping: Grouping, first_filter: int, clauses: str, select_dims: str, named: str
    ) -> str:
        """``inventory`` of questions naming platforms, stores or marketplaces: their
        SKU-days paired up from the cells of the stores asked about, in their groups."""
        source = _measures_source(grouping, "m", first_filter, per_sku=True)
        joined = "".join(f" AND c.{d} = b.{d}" for d in grouping.group_by)
        b_named = "".join(f", b.{d}" for d in grouping.group_by)
        # Days first, then their buckets: a period is worked out once a day, not once
        # for each of a day's thousands of SKUs; on hand is summed on the last days only.
        return f"""
            WITH cells AS NOT MATERIALIZED (
                SELECT m.local_date{select_dims}, m.sku AS cell_sku, m.measure, m.value
                FROM {source}
                WHERE tenant_id = $1 AND local_date BETWEEN $2 AND $3
                  AND measure IN ('on_hand', 'snapshots') AND value <> 0 {clauses}
            ),
            sku_days AS (
                SELECT local_date{named}, bool_or(measure = 'on_hand') AS stocked
                FROM cells GROUP BY local_date{named}, cell_sku
                HAVING bool_or(measure = 'snapshots')
            ),
            days AS (
                SELECT local_date{named}, count(*) AS sku_days,
                       count(*) FILTER (WHERE NOT stocked) AS stockout_sku_days
                FROM sku_days GROUP BY local_date{named}
            ),
            buckets AS (
                SELECT {_period(grouping.grain, "d")} AS period{named},
                       sum(sku_days) AS sku_days, sum(stockout_sku_days) AS stockout_sku_days,
                       max(local_date) AS last_day
                FROM days d GROUP BY period{named}
            ),
            last_stock AS (
                SELECT b.period{b_named}, sum(c.value) AS on_hand_last
                FROM cells c JOIN buckets b ON c.local_date = b.last_day{joined}
                WHERE c.measure = 'on_hand'
                  AND c.local_date IN (SELECT last_day FROM buckets)
                GROUP BY b.period{b_named}
            )
            SELECT period{named}, sku_days, stockout_sku_days,
                   coalesce(on_hand_last, 0) AS on_hand_last
            FROM buckets LEFT JOIN last_stock USING (period{named})
            """

    async def passed_promises(
        self, grouping: Grouping, since: datetime, until: datetime
    ) -> list[asyncpg.Record]:
        """Shipments still open whose promised instant lies in (since, until], within
        the query's filters: platform, store_id, marketplace and promised_ship_by. A
        shipment has no SKU or category, so a filter on either leaves none."""
        if "sku" in grouping.filters or "category" in grouping.filters:
            return []
        clauses, args = _filter_clauses(grouping.filters, 4)
        rows: list[asyncpg.Record] = await self.conn.fetch(
            f"""
            SELECT platform, store_id AS store, marketplace, promised_ship_by
            FROM open_shipments
            WHERE tenant_id = $1 AND promised_ship_by > $2 AND promised_ship_by <= $3
                  {clauses}
            """,
            grouping.tenant_id,
            since,
            until,
            *args,
        )
        return rows

    async def promise_stamp(self, tenant_id: str, until: datetime) -> str:
        """The latest promise of an open shipment passed by ``until``. At one data
        version the open shipments are fixed, so this names which of them are late:
        an answer with late shipments changes exactly when it does."""
        latest = await self.conn.fetchval(
            "SELECT max(promised_ship_by) FROM open_shipments "
            "WHERE tenant_id = $1 AND promised_ship_by <= $2",
            tenant_id,
            until,
        )
        return "" if latest is None else str(latest.isoformat())

    async def fx_rates(self, tenant_id: str) -> list[tuple[date, str, str, Decimal]]:
        """Every rate of the tenant: a day's factor never looks past that day. Of two
        rates for one pair and date, the one pushed last comes last and wins."""
        rows = await self.conn.fetch(
            "SELECT rate_date, base, quote, rate FROM fx_rates WHERE tenant_id = $1 "
            "ORDER BY rate_date, ingested_at NULLS FIRST, event_id",
            tenant_id,
        )
        return [(r["rate_date"], r["base"], r["quote"], r["rate"]) for r in rows]

    async def first_unit_costs(self, tenant_id: str, skus: list[str]) -> dict[str, date]:
        """Of each SKU with a unit cost (in any store), the day its first one takes effect:
        a line of it before that day has no cost, in any store."""
        rows = await self.conn.fetch(
            "SELECT sku, min(effective_from) AS first FROM unit_costs "
            "WHERE tenant_id = $1 AND sku = ANY($2::text[]) GROUP BY sku",
            tenant_id,
            skus,
        )
        return {row["sku"]: row["first"] for row in rows}

    async def currencies(self, tenant_id: str, start: date, end: date) -> set[str]:
        """Every currency an amount of the range may be in."""
        rows = await self.conn.fetch(
            """
            SELECT DISTINCT currency FROM daily_store_sales WHERE tenant_id = $1 AND local_date BETWEEN $2 AND $3
            UNION SELECT DISTINCT currency FROM daily_store_measures WHERE tenant_id = $1 AND local_date BETWEEN $2 AND $3
            UNION SELECT DISTINCT currency FROM unit_costs WHERE tenant_id = $1
            """,
            tenant_id,
            start,
            end,
        )
        return {r["currency"] for r in rows if r["currency"]}

    async def days_with_amounts(
        self,
        grouping: Grouping,
        currency: str,
        days: list[date],
        sales_read: list[str],
        measures_read: list[str],
    ) -> list[date]:
        """Of the given days, in order, those on which the currency has amounts other than
        zero as the answer converts them (the sales sums and measures named, within its
        stores, marketplaces, platforms, SKUs and categories, per day and group, or per
        row by SKU): an answer warns of no rate it did not need (a GMV, of no refund's;
        a free line's, which is zero), and tells a caller limited to some categories
        nothing of the others' days."""
        filters = grouping.filters
        first_filter = 5  # after the tenant, the currency, the days, the measures
        clauses, values = _filter_clauses(filters, first_filter)
        by_sku = "sku" in grouping.group_by
        groups = "".join(f", {COLUMNS[d]}" for d in grouping.group_by)
        sums = sales_read  # the money sums' expressions, as ``sales`` converts them
        if not sums:
            sales_days = "SELECT NULL::date WHERE false"
        else:
            # As ``sales`` reads them: summed per day and group, each row apart by SKU.
            where = f"""FROM {_sales_table(grouping)} WHERE tenant_id = $1 AND currency = $2
                AND local_date = ANY($3::date[]) {clauses}"""
            if by_sku:
                nonzero = " OR ".join(f"({expression}) <> 0" for expression in sums)
                sales_days = f"SELECT local_date {where} AND ({nonzero})"
            else:
                nonzero = " OR ".join(f"sum({expression}) <> 0" for expression in sums)
                sales_days = (
                    f"SELECT local_date {where} GROUP BY local_date{groups} HAVING {nonzero}"
                )
        # Measures as ``measures`` converts them: a fee and a credit netting to zero on a
        # day, in a currency and a group, need no rate unless the answer is by SKU, where
        # each is a value of its own.
        measures = _measures_source(grouping, "m", first_filter)
        measure_clauses = _filter_clauses(filters, first_filter, "m")[0]
        if by_sku:
            measure_days = f"""SELECT m.local_date FROM {measures}
                WHERE m.tenant_id = $1 AND m.currency = $2 AND m.local_date = ANY($3::date[])
                  AND m.measure = ANY($4::text[]) AND m.value <> 0 {measure_clauses}"""
        else:
            measure_groups = "".join(f", m.{COLUMNS[d]}" for d in grouping.group_by)
            measure_days = f"""SELECT m.local_date FROM {measures}
                WHERE m.tenant_id = $1 AND m.currency = $2 AND m.local_date = ANY($3::date[])
                  AND m.measure = ANY($4::text[]) {measure_clauses}
                GROUP BY m.local_date, m.measure{measure_groups} HAVING sum(m.value) <> 0"""
        rows = await self.conn.fetch(
            f"""
            SELECT d FROM ({sales_days} UNION {measure_days}) days(d)
            ORDER BY d
            """,
            grouping.tenant_id,
            currency,
            days,
            measures_read,
            *values,
        )
        return [row["d"] for row in rows]

    async def dominant_currency(self, tenant_id: str, start: date, end: date) -> str | None:
        value = await self.conn.fetchval(
            "SELECT currency FROM daily_store_sales WHERE tenant_id = $1 AND local_date BETWEEN $2 AND $3 "
            "GROUP BY currency ORDER BY sum(lines) DESC, currency LIMIT 1",
            tenant_id,
            start,
            end,
        )
        return str(value) if value is not None else None
