"""Answering a KPI query from the rollups."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import date
from decimal import Decimal
from typing import Any

import asyncpg

from services.metrics.kpis.query import (
    KpiQuery,
    Measured,
    answer,
    comparison_range,
)
from services.metrics.kpis.repository import COLUMNS, RollupRepository

SALES_METRICS = {"gmv", "units", "aov"}
ORDER_METRICS = {"orders", "aov"}
# What an empty bucket holds: sums are zero, ratios are undefined.
DEFAULTS: dict[str, Decimal | None] = {"gmv": Decimal(0), "units": Decimal(0), "orders": Decimal(0)}


async def _measure(
    repository: RollupRepository, query: KpiQuery, start: date, end: date, currency: str | None
) -> tuple[Measured, str | None]:
    measured = Measured()
    wanted = set(query.metrics)
    dims = [COLUMNS[d] for d in query.group_by]
    gmv: dict[Any, Decimal | None] = defaultdict(lambda: Decimal(0))
    if wanted & SALES_METRICS:
        rows = await repository.sales(
            query.tenant_id, start, end, query.grain, query.group_by, query.filters
        )
        if currency is None and rows:
            # No currency asked: the one most lines are in (conversion comes with FX).
            weights: Counter[str] = Counter()
            for row in rows:
                weights[row["currency"]] += int(row["units"])
            currency = weights.most_common(1)[0][0]
        for row in rows:
            key = (row["period"], tuple(row[c] for c in dims))
            values = measured.values[key]
            values["units"] = values.get("units", Decimal(0)) + Decimal(row["units"])  # type: ignore[operator]
            if row["currency"] != currency:
                first = row["first_date"].isoformat()
                measured.warnings.append(f"no FX rate for {row['currency']}→{currency} on {first}")
                gmv[key] = None
            elif gmv[key] is not None:
                gmv[key] = gmv[key] + row["gross"] + row["shipping"] - row["discount"]
        for key, value in gmv.items():
            measured.values[key]["gmv"] = value
    if wanted & ORDER_METRICS:
        rows = await repository.orders(
            query.tenant_id, start, end, query.grain, query.group_by, query.filters
        )
        for row in rows:
            key = (row["period"], tuple(row[c] for c in dims))
            measured.values[key]["orders"] = Decimal(row["orders"])
    if "aov" in wanted:
        for values in measured.values.values():
            total = values.get("gmv", Decimal(0))
            orders = values.get("orders", Decimal(0))
            values["aov"] = None if total is None or not orders else total / orders
    return measured, currency


async def run_query(conn: asyncpg.Connection, query: KpiQuery) -> dict[str, Any]:
    repository = RollupRepository(conn)
    current, currency = await _measure(repository, query, query.start, query.end, query.currency)
    previous = None
    if query.compare_to:
        earlier = comparison_range(query)
        previous, _ = await _measure(repository, query, earlier.start, earlier.end, currency)
    return answer(query, currency, current, previous, DEFAULTS)
