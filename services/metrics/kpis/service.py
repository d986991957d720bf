"""Answering a KPI query from the rollups, in the reporting currency."""

from __future__ import annotations

import asyncio
from bisect import bisect_left, bisect_right
from collections import defaultdict
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from itertools import accumulate
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg

from services.metrics.facts.zones import store_zones_for
from services.metrics.fx.rates import RateBook
from services.metrics.kpis.cache import (
    ANSWERS,
    TENANT_VERSIONS,
    AnswerCache,
    TenantVersion,
    answer_key,
    now_dependent,
)
from services.metrics.kpis.formulas import (
    COGS_INPUTS,
    COVER_DAYS,
    EXACT,
    FORMULAS,
    INVENTORY_INPUTS,
    MONEY_INPUTS,
    ORDER_INPUTS,
    SALES_INPUTS,
    TRAILING_INPUTS,
    Inputs,
    exact_sum,
    with_defaults,
)
from services.metrics.kpis.query import (
    TOTAL,
    KpiQuery,
    Measured,
    RowKey,
    all_periods,
    answer,
    answer_too_large,
    comparison_ranges,
    no_unit_cost_warning,
    shift,
)
from services.metrics.kpis.repository import SALES_SUMS, Grouping, RollupRepository
from services.metrics.settings.repository import SettingsRepository
from services.metrics.settings.schemas import KpiSettings
from shared.time import marketplace_zone

# What an empty bucket holds: sums are zero; ratios then come out undefined.
ZERO = Decimal(0)
# Rows an answer may hold before it is refused: a year by day and SKU of 2,000 SKUs
# (730,000 rows) took the metrics process 48 s of CPU and 2 GB of memory to build.
MAX_ANSWER_ROWS = 100_000


class _Range:
    """One date range's inputs per bucket, and what could not be converted."""

    def __init__(self, query: KpiQuery) -> None:
        self.query = query
        # Top N keeps fewer rows than it reads: the asker's bound applies to the answer.
        taken = query.most_rows if query.limit is None else None
        self.most = min(MAX_ANSWER_ROWS, taken or MAX_ANSWER_ROWS)
        self.inputs: dict[RowKey, Inputs] = defaultdict(dict)
        self.warnings: list[str] = []

    def put(self, key: RowKey, name: str, value: Any) -> None:
        if key not in self.inputs and len(self.inputs) >= self.most:
            raise answer_too_large(self.query, self.most)
        # Sums come from asyncpg as Decimal already; counts come as int.
        self.inputs[key][name] = (
            value if value is None or type(value) is Decimal else Decimal(value)
        )


# SKUs without a unit cost named one by one, then counted: 20,000 of them wrote 20,000
# warnings into every answer (and each GraphQL alias) that asked for cogs.
MAX_SKUS_NAMED = 100


async def _no_unit_cost_warnings(
    repository: RollupRepository, query: KpiQuery, skus: set[str]
) -> list[str]:
    named = sorted(skus)[:MAX_SKUS_NAMED]
    first = await repository.first_unit_costs(query.tenant_id, named)
    warnings = [no_unit_cost_warning(sku, first.get(sku)) for sku in named]
    more = len(skus) - len(named)
    if more > 0:
        warnings.append(f"no unit cost for {more} more SKU{'s' if more > 1 else ''}")
    return warnings


async def _measure(
    repository: RollupRepository,
    query: KpiQuery,
    start: date,
    end: date,
    target: str,
    known: TenantVersion,
    settings: KpiSettings,
    now: datetime,
) -> Measured:
    answerable = query.answerable()
    needed = set().union(*(FORMULAS[m].inputs for m in answerable))
    found = _Range(query)
    currencies = sorted(
        await _currencies(repository, known, query.tenant_id, start, end) - {target}
    )
    factor_texts = []
    missing: dict[str, list[date]] = {}
    for currency in currencies:
        factors = known.book.factors(currency, target, start, end)
        factor_texts.append(factors.text)
        if factors.missing:
            missing[currency] = [start + timedelta(days=n) for n in factors.missing]
    grouping = Grouping(
        query.tenant_id, start, end, query.grain, query.group_by, query.filters,
        target, currencies, ",".join(factor_texts), rates_missing=bool(missing),
    )  # fmt: skip

    key = _row_key(query.group_by)
    sales = _sales_sums(needed, settings)
    if sales:
        for row in await repository.sales(grouping, sales):
            row_key = key(row)
            for name in sales:
                found.put(row_key, name, row[name])
    # The days each currency lacked a rate on, where the answer needed one.
    unconverted: dict[str, set[date]] = defaultdict(set)
    if needed & COGS_INPUTS:
        without_cost: set[str] = set()
        for row in await repository.cogs(grouping):
            found.put(key(row), "cogs", row["cogs"])
            without_cost |= set(row["skus_without_cost"] or [])
            # Unit costs have a currency of their own, whatever the lines' is.
            for cost in row["costs_without_rate"] or []:
                currency, day = cost.split(" ")
                unconverted[currency].add(date.fromisoformat(day))
        if without_cost:
            found.warnings += await _no_unit_cost_warnings(repository, query, without_cost)
    if needed & ORDER_INPUTS:
        for row in await repository.orders(grouping):
            row_key = key(row)
            for name in ORDER_INPUTS:
                found.put(row_key, name, row[name])
    if needed & INVENTORY_INPUTS:
        _inventory(await repository.inventory(grouping), key, found)
    if needed & TRAILING_INPUTS:
        await _trailing_units(repository, query, grouping, found)
    windowed = {name for name in needed if "@" in name}
    if windowed:
        await _windowed_measures(repository, query, grouping, windowed, found, now)
    measure_names = sorted(
        needed
        - SALES_INPUTS
        - COGS_INPUTS
        - ORDER_INPUTS
        - INVENTORY_INPUTS
        - TRAILING_INPUTS
        - windowed
    )
    # A tenant counting refunds by purchase date reads the cells kept that way.
    by_purchase = settings.refunds_by == "purchase_date" and "refund_amount" in measure_names
    stored = {
        name: REFUNDS_BY_PURCHASE if by_purchase and name == "refund_amount" else name
        for name in measure_names
    }
    if stored:
        inputs_of = {measure: name for name, measure in stored.items()}
        for row in await repository.measures(grouping, sorted(stored.values())):
            found.put(key(row), inputs_of[row["measure"]], row["value"])
    # Sales amounts: units are counted, not converted, and COGS is priced in its costs'
    # currencies, found above.
    reads_sales = [sum_ for name, sum_ in sales.items() if name in MONEY_SALES]
    reads_measures = sorted(stored.values())
    for currency, dates in missing.items() if needed & MONEY_INPUTS else ():
        if reads_sales or reads_measures:
            unconverted[currency].update(
                await repository.days_with_amounts(
                    grouping, currency, dates, reads_sales, reads_measures
                )
            )
    measured = Measured(warnings=found.warnings, unrated=unconverted)
    blank = with_defaults({}, needed)
    formulas = [(m, FORMULAS[m].compute) for m in answerable]
    for row_key, inputs in found.inputs.items():
        # What a bucket lacks of its inputs is as in an empty bucket.
        complete = {**blank, **inputs}
        measured.values[row_key] = {metric: compute(complete) for metric, compute in formulas}
    return measured


def _row_key(group_by: list[str]) -> Callable[[asyncpg.Record], RowKey]:
    """A rollup row's (period, dimensions): per row of thousands, so the usual one or
    no dimension skips the general case's generator."""
    if not group_by:
        return lambda row: (row["period"], ())
    if len(group_by) == 1:
        (dimension,) = group_by
        return lambda row: (row["period"], (row[dimension],))
    return lambda row: (row["period"], tuple(row[d] for d in group_by))


def _bucket_end(period: str, grain: str, measured: Grouping) -> date:
    """The last day of a bucket of the range being measured (the comparison range's own
    end for ``previous``): windows end there."""
    if period == TOTAL:
        return measured.end
    after = shift(date.fromisoformat(period), grain, forward=True)
    return min(after - timedelta(days=1), measured.end)


class _RunningSums:
    """A day-by-day series whose sum over any span of days takes two bisections, not a
    scan of every day for every bucket (a year by day and SKU is 730,000 buckets)."""

    def __init__(self, by_day: dict[date, Decimal]) -> None:
        self.days = sorted(by_day)
        self.running = list(accumulate((by_day[day] for day in self.days), initial=ZERO))

    def over(self, end: date, days: int) -> tuple[Decimal, bool]:
        """The sum over the ``days`` days ending on ``end``, and whether any day of
        them is in the series."""
        first = bisect_left(self.days, end - timedelta(days=days - 1))
        after = bisect_right(self.days, end)
        return self.running[after] - self.running[first], after > first


async def _trailing_units(
    repository: RollupRepository, query: KpiQuery, grouping: Grouping, found: _Range
) -> None:
    """Units sold in the 30 days ending on each bucket's last day (days of cover)."""
    window = int(COVER_DAYS)
    daily = replace(grouping, start=grouping.start - timedelta(days=window - 1), grain="day")
    units: dict[tuple[str, ...], dict[date, Decimal]] = defaultdict(dict)
    for row in await repository.sales(daily, {"units": SALES_SUMS["units"]}):
        dims = tuple(row[d] for d in query.group_by)
        units[dims][date.fromisoformat(row["period"])] = Decimal(row["units"] or 0)
    ends = {
        period: _bucket_end(period, query.grain, grouping)
        for period in all_periods(grouping.start, grouping.end, query.grain)
    }
    for dims, by_day in units.items():
        sold = _RunningSums(by_day)
        for period, end in ends.items():
            total, any_sold = sold.over(end, window)
            # A group with no data in a bucket has no row there, unless its window has.
            if any_sold or (period, dims) in found.inputs:
                found.put((period, dims), "units_30d", total)
    for period, dims in list(found.inputs):
        if dims not in units:
            found.put((period, dims), "units_30d", ZERO)


# What a windowed input sums, and with which sign: shipments late are those shipped
# late plus those not shipped whose promise has passed; shipments due are those shipped
# plus those overdue (one not shipped whose promise is still to come is not due yet).
REFUNDS_BY_PURCHASE = "refund_amount_by_purchase"
_WINDOW_PARTS = {
    "shipments_late": (("shipments_shipped_late", 1), ("shipments_overdue", 1)),
    "shipments_due": (("shipments_due", 1), ("shipments_unshipped", -1), ("shipments_overdue", 1)),
}
# Where the store's local day has moved past the promised day: read per store.
_OVERDUE = "shipments_overdue"
# How far back a store's "today" may have begun (a day of 25 hours, and then some).
PROMISES_OF_TODAY = timedelta(hours=26)


async def _windowed_measures(
    repository: RollupRepository,
    query: KpiQuery,
    grouping: Grouping,
    names: set[str],
    found: _Range,
    now: datetime,
) -> None:
    """Inputs "measure@N": the measure over the N days ending on each bucket's last day."""
    windows = {name: int(name.split("@")[1]) for name in names}
    longest = max(windows.values())
    daily = replace(grouping, start=grouping.start - timedelta(days=longest - 1), grain="day")
    measures = sorted(
        {
            part
            for name in names
            for part, _ in _WINDOW_PARTS.get(name.split("@")[0], ((name.split("@")[0], 1),))
        }
    )
    counts: dict[tuple[str, ...], dict[date, dict[str, Decimal]]] = defaultdict(
        lambda: defaultdict(dict)
    )
    summed = [m for m in measures if m not in ORDER_INPUTS and m != _OVERDUE]
    for row in await repository.measures(daily, summed):
        dims = tuple(row[d] for d in query.group_by)
        counts[dims][date.fromisoformat(row["period"])][row["measure"]] = Decimal(row["value"] or 0)
    if _OVERDUE in measures:
        await _overdue_shipments(repository, query, daily, counts, now)
    if set(measures) & ORDER_INPUTS:
        for row in await repository.orders(daily):
            dims = tuple(row[d] for d in query.group_by)
            placed = counts[dims][date.fromisoformat(row["period"])]
            for name in set(measures) & ORDER_INPUTS:
                placed[name] = Decimal(row[name] or 0)
    series = {
        (dims, name): _RunningSums(_parts_summed(by_day, name.split("@")[0]))
        for dims, by_day in counts.items()
        for name in windows
    }
    had_data = set(found.inputs)
    buckets = had_data | {
        (period, dims)
        for dims in counts
        for period in all_periods(grouping.start, grouping.end, query.grain)
    }
    for period, dims in buckets:
        end = _bucket_end(period, query.grain, grouping)
        totals = {
            name: series[(dims, name)].over(end, window)[0] if dims in counts else ZERO
            for name, window in windows.items()
        }
        if dims and (period, dims) not in had_data and not any(totals.values()):
            # A group has a row in a period when it has data then: none in any window.
            continue
        for name, total in totals.items():
            found.put((period, dims), name, total)


def _parts_summed(by_day: dict[date, dict[str, Decimal]], measure: str) -> dict[date, Decimal]:
    """Each day's ``measure``, the signed sum of its parts when it has some
    (``_WINDOW_PARTS``)."""
    parts = _WINDOW_PARTS.get(measure, ((measure, 1),))
    return {
        day: exact_sum(EXACT.multiply(values.get(part, ZERO), sign) for part, sign in parts)
        for day, values in by_day.items()
    }


async def _overdue_shipments(
    repository: RollupRepository,
    query: KpiQuery,
    daily: Grouping,
    counts: dict[tuple[str, ...], dict[date, dict[str, Decimal]]],
    now: datetime,
) -> None:
    """Shipments not shipped by ``now``: of days before the store's today, all those not
    shipped (from the rollups); of its today, those whose promised instant has passed
    (from the open shipments). Each store's own day decides, in Tokyo as in Los
    Angeles, whatever the server's clock says."""
    per_store = [*query.group_by, *(d for d in ("store", "marketplace") if d not in query.group_by)]
    earlier = await repository.measures(replace(daily, group_by=per_store), ["shipments_unshipped"])
    today = await repository.passed_promises(daily, now - PROMISES_OF_TODAY, now)
    zones = await store_zones_for(
        repository.conn, {(query.tenant_id, r["store"]) for r in [*earlier, *today]}
    )

    def store_today(row: Any) -> tuple[ZoneInfo, date]:
        zone = marketplace_zone(row["marketplace"], zones.get((query.tenant_id, row["store"])))
        return zone, now.astimezone(zone).date()

    def place(row: Any, day: date, count: Decimal) -> None:
        placed = counts[tuple(row[d] for d in query.group_by)][day]
        placed[_OVERDUE] = placed.get(_OVERDUE, ZERO) + count

    for row in earlier:
        day = date.fromisoformat(row["period"])
        if day < store_today(row)[1]:
            place(row, day, Decimal(row["value"] or 0))
    for row in today:
        zone, local_today = store_today(row)
        if row["promised_ship_by"].astimezone(zone).date() == local_today and (
            daily.start <= local_today <= daily.end
        ):
            place(row, local_today, Decimal(1))


def _inventory(rows: list[asyncpg.Record], key: Any, found: _Range) -> None:
    """on_hand on each bucket's last snapshot day; SKU-days snapshotted and out of stock."""
    for row in rows:
        bucket = key(row)
        for name in INVENTORY_INPUTS:
            found.put(bucket, name, row[name])


# The sales sums that are money (units are counted).
MONEY_SALES = frozenset({"gmv"})


def _sales_sums(needed: set[str], settings: KpiSettings) -> dict[str, str]:
    """The sales sums a query needs, each a sum of the rollups' columns: GMV as the
    tenant defines it (with tax or without shipping, as settings say) is one amount,
    converted as one, so that a line whose GMV is zero needs no rate, whatever its
    shipping or tax."""
    sums = {name: SALES_SUMS[name] for name in sorted(needed & SALES_INPUTS)}
    if "gmv" in sums:
        goods = "gross - discount"
        shipping = " + shipping" if settings.gmv_includes_shipping else ""
        tax = " + tax" if settings.gmv_includes_tax else ""
        sums["gmv"] = goods + shipping + tax
    return sums


def _empty_bucket(query: KpiQuery) -> dict[str, Decimal | None]:
    """Each metric's value where its bucket holds nothing; null for one that cannot be
    split as asked."""
    answerable = query.answerable()
    nothing = with_defaults({}, {name for m in answerable for name in FORMULAS[m].inputs})
    return {m: FORMULAS[m].compute(nothing) if m in answerable else None for m in query.metrics}


async def current_key(
    conn: asyncpg.Connection, query: KpiQuery, tenant_currency: str | None = None
) -> str:
    """The key the answer to ``query`` has now (see kpis.cache): one round trip (two
    with late shipments)."""
    version, settings = await _tenant_state(conn, query.tenant_id)
    return await _key(conn, query, version, settings, tenant_currency, datetime.now(UTC))


async def run_query(
    conn: asyncpg.Connection,
    query: KpiQuery,
    cache: AnswerCache = ANSWERS,
    tenant_currency: str | None = None,
    key: str | None = None,
) -> tuple[dict[str, Any], str]:
    """The answer to ``query`` and the key it is cached under, from ``cache`` while
    the tenant's data is unchanged; ``key`` is ``current_key`` when the caller read it.

    A hit costs one round trip (the data version and the settings). A miss reads the
    version again inside one read-only snapshot with every rollup read, so an answer is
    never cached under a version older than the data it shows. A miss for a key that is
    being computed already waits for that answer: after each change of a tenant's data,
    every dashboard showing the same question asks again at once.
    """
    key = key or await current_key(conn, query, tenant_currency)
    cached = cache.get(key)
    if cached is not None:
        return cached, key
    underway = COMPUTING.get(key)
    if underway is not None:
        # Computed at this version or a later one: never older than what was asked.
        answered = await asyncio.shield(underway)
        if answered is not None:
            return answered
    return await _computed(conn, query, cache, tenant_currency, key)


# Answers being computed in this process, by the key they were asked under; None
# tells the waiters the computation failed and they compute for themselves.
COMPUTING: dict[str, asyncio.Future[tuple[dict[str, Any], str] | None]] = {}


async def _computed(
    conn: asyncpg.Connection,
    query: KpiQuery,
    cache: AnswerCache,
    tenant_currency: str | None,
    asked_as: str,
) -> tuple[dict[str, Any], str]:
    announced = asked_as not in COMPUTING
    if announced:
        COMPUTING[asked_as] = asyncio.get_running_loop().create_future()
    answered: tuple[dict[str, Any], str] | None = None
    try:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            # The rollup reads are the same statements with other dates and tenants:
            # after five runs PostgreSQL would plan them once for any range, often
            # without the parallel scan a month of SKUs needs (its top 50 took 150 ms
            # instead of 105).
            await conn.execute("SET LOCAL plan_cache_mode = force_custom_plan")
            # One instant for the answer and its key: a promise passing between the two
            # would cache an answer without that late shipment under a key with it.
            now = datetime.now(UTC)
            version, settings = await _tenant_state(conn, query.tenant_id)
            known = await _tenant_version(RollupRepository(conn), query.tenant_id, version)
            body = await _compute(conn, query, settings, tenant_currency, known, now)
            key = await _key(conn, query, version, settings, tenant_currency, now)
        cache.put(key, body)
        answered = body, key
        return answered
    finally:
        if announced:
            COMPUTING.pop(asked_as).set_result(answered)


async def _key(
    conn: asyncpg.Connection,
    query: KpiQuery,
    version: int,
    settings: KpiSettings,
    tenant_currency: str | None,
    now: datetime,
) -> str:
    """The answer's cache key. Besides the data, an answer with late shipments depends
    on which promises have passed by ``now`` (one more passing makes a shipment late)."""
    moment = (
        await RollupRepository(conn).promise_stamp(query.tenant_id, now)
        if now_dependent(query)
        else ""
    )
    return answer_key(query, version, f"{settings.model_dump_json()}|{tenant_currency}", moment)


async def _tenant_state(conn: asyncpg.Connection, tenant_id: str) -> tuple[int, KpiSettings]:
    return await SettingsRepository(conn).get_with_data_version(tenant_id)


async def _tenant_version(
    repository: RollupRepository, tenant_id: str, version: int
) -> TenantVersion:
    """What is kept of the tenant as of ``version``; its rates are read in the caller's
    snapshot of that version when this process has none yet."""
    known = TENANT_VERSIONS.get((tenant_id, version))
    if known is None:
        known = TenantVersion(RateBook.from_rows(await repository.fx_rates(tenant_id)))
        TENANT_VERSIONS.put((tenant_id, version), known)
    return known


async def _currencies(
    repository: RollupRepository, known: TenantVersion, tenant_id: str, start: date, end: date
) -> frozenset[str]:
    """Every currency an amount of the range may be in, as of the version ``known`` is
    of (read in the caller's snapshot of it when not kept yet)."""
    found = known.currencies.get((start, end))
    if found is None:
        found = frozenset(await repository.currencies(tenant_id, start, end))
        known.currencies.put((start, end), found)
    return found


async def _compute(
    conn: asyncpg.Connection,
    query: KpiQuery,
    settings: KpiSettings,
    tenant_currency: str | None,
    known: TenantVersion,
    now: datetime,
) -> dict[str, Any]:
    repository = RollupRepository(conn)
    target = (
        query.currency
        or settings.reporting_currency
        or tenant_currency
        or await repository.dominant_currency(query.tenant_id, query.start, query.end)
        or "USD"
    )
    current = await _measure(
        repository, query, query.start, query.end, target, known, settings, now
    )
    previous = None
    for earlier in comparison_ranges(query) if query.compare_to else []:
        measured = await _measure(
            repository, query, earlier.start, earlier.end, target, known, settings, now
        )
        previous = measured if previous is None else previous.joined(measured)
    return answer(query, target, current, previous, _empty_bucket(query))
