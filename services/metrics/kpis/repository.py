"""Reading the daily rollups, grouped by period and dimensions. Never the raw facts."""

from __future__ import annotations

from datetime import date
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
ORDER_DIMENSIONS = ("platform", "store", "marketplace")


def _period(grain: str) -> str:
    if grain == "total":
        return "'TOTAL'"
    if grain == "day":
        return "to_char(local_date, 'YYYY-MM-DD')"
    return f"to_char(date_trunc('{grain}', local_date), 'YYYY-MM-DD')"


def _where(
    filters: dict[str, list[str]], allowed: tuple[str, ...], first: int
) -> tuple[str, list[Any]]:
    clauses, args = [], []
    for position, (dimension, values) in enumerate(
        ((d, v) for d, v in filters.items() if d in allowed), start=first
    ):
        clauses.append(f"AND {COLUMNS[dimension]} = ANY(${position}::text[])")
        args.append(values)
    return " ".join(clauses), args


SALES_MEASURES = (
    "currency, sum(gross) AS gross, sum(shipping) AS shipping, sum(discount) AS discount, "
    "sum(tax) AS tax, sum(units) AS units, min(local_date) AS first_date"
)
ORDER_MEASURES = "sum(orders) AS orders, sum(orders_all) AS orders_all"


class RollupRepository:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def _grouped(
        self,
        table: str,
        measures: str,
        extra_group: str,
        allowed: tuple[str, ...],
        tenant_id: str,
        start: date,
        end: date,
        grain: str,
        group_by: list[str],
        filters: dict[str, list[str]],
    ) -> list[asyncpg.Record]:
        select_dims = "".join(f", {COLUMNS[d]}" for d in group_by)
        where, args = _where(filters, allowed, 4)
        rows: list[asyncpg.Record] = await self.conn.fetch(
            f"""
            SELECT {_period(grain)} AS period{select_dims}, {measures}
            FROM {table}
            WHERE tenant_id = $1 AND local_date BETWEEN $2 AND $3 {where}
            GROUP BY 1{select_dims}{extra_group}
            """,
            tenant_id,
            start,
            end,
            *args,
        )
        return rows

    async def sales(
        self,
        tenant_id: str,
        start: date,
        end: date,
        grain: str,
        group_by: list[str],
        filters: dict[str, list[str]],
    ) -> list[asyncpg.Record]:
        """Per period, dimensions and currency: sales parts of live lines."""
        return await self._grouped(
            "daily_sales", SALES_MEASURES, ", currency", tuple(COLUMNS),
            tenant_id, start, end, grain, group_by, filters,
        )  # fmt: skip

    async def orders(
        self,
        tenant_id: str,
        start: date,
        end: date,
        grain: str,
        group_by: list[str],
        filters: dict[str, list[str]],
    ) -> list[asyncpg.Record]:
        """Per period and dimensions: orders with a live line, and all orders placed."""
        return await self._grouped(
            "daily_orders", ORDER_MEASURES, "", ORDER_DIMENSIONS,
            tenant_id, start, end, grain, group_by, filters,
        )  # fmt: skip
