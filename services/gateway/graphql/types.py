"""The GraphQL types of CONTRACT §5, named exactly as clients write them."""

from __future__ import annotations

import dataclasses
import datetime
import json
from enum import Enum

import strawberry
from strawberry.exceptions import StrawberryInputCoercionError

from shared.time import DATE_TEXT


def _calendar_date(value: object) -> datetime.date:
    """A Date from a variable or a literal. The value is shown as JSON (a literal's
    as graphql-core reads it): ``20260131`` is a number, not the text it should be."""
    shown = json.dumps(value, default=str, ensure_ascii=False)
    if not isinstance(value, str):
        reason = "Expected a string, a date such as 2026-01-31."
    elif not DATE_TEXT.match(value):
        # Python reads 20260131 and 2026-W05-6 as dates too; the contract writes 2026-01-31.
        reason = "Expected a date such as 2026-01-31."
    else:
        try:
            return datetime.date.fromisoformat(value)
        except ValueError as error:
            reason = str(error)
    raise StrawberryInputCoercionError(f"Value cannot represent a Date: {shown}. {reason}")


# CONTRACT §5's `scalar Date`, in place of strawberry's own for datetime.date.
DATE = strawberry.scalar(
    name="Date",
    description="A local calendar date, 2026-01-31",
    serialize=datetime.date.isoformat,
    parse_value=_calendar_date,
)


@strawberry.enum(
    description="The buckets of an answer: an ISO week is Monday to Sunday; TOTAL is one "
    "bucket over the whole range"
)
class Grain(Enum):
    DAY = "day"
    WEEK = "week"
    MONTH = "month"
    QUARTER = "quarter"
    YEAR = "year"
    TOTAL = "total"


@strawberry.enum(description="What rows are grouped by (groupBy), and named in dimensions")
class Dimension(Enum):
    PLATFORM = "platform"
    STORE = "store"
    MARKETPLACE = "marketplace"
    SKU = "sku"
    CATEGORY = "category"


@strawberry.enum(
    description="What each value is compared with: the same bucket one period, or one year, earlier"
)
class Comparison(Enum):
    PREVIOUS_PERIOD = "previous_period"
    PREVIOUS_YEAR = "previous_year"


@strawberry.enum
class SortDirection(Enum):
    DESC = "desc"
    ASC = "asc"


def absent_as_none(given: object) -> None:
    """An optional input field left out is None, as one given as null is. Its default
    is UNSET, not None, so that the schema gives it no default (CONTRACT §5's SDL
    gives none; a schema check against it would report `= null` as a change)."""
    for field in dataclasses.fields(given):  # type: ignore[arg-type]
        if getattr(given, field.name) is strawberry.UNSET:
            setattr(given, field.name, None)


@strawberry.input(description="Orders each period's rows by one of the metrics asked for.")
class KpiOrder:
    metric: str
    direction: SortDirection = SortDirection.DESC


@strawberry.input(
    description="Only the facts of these values (any of each list, all lists at once); "
    '"" is the group of lines without one (a SKU or category not given)'
)
class KpiFilters:
    platforms: list[str] | None = strawberry.UNSET
    stores: list[str] | None = strawberry.UNSET
    marketplaces: list[str] | None = strawberry.UNSET
    skus: list[str] | None = strawberry.UNSET
    categories: list[str] | None = strawberry.UNSET

    def __post_init__(self) -> None:
        absent_as_none(self)


@strawberry.input(description="A KPI question (CONTRACT §5)")
class KpiQueryInput:
    metrics: list[str] = strawberry.field(
        description="KPI ids, as kpiCatalog lists them (gmv, orders, acos ...)"
    )
    # "Date" (see DATE), serialised as "2026-01-31".
    from_: datetime.date = strawberry.field(
        name="from", description="The first local date, inclusive"
    )
    to: datetime.date = strawberry.field(description="The last local date, inclusive")
    grain: Grain
    group_by: list[Dimension] | None = strawberry.field(
        default=strawberry.UNSET, description="A row for each group; none: one row a period"
    )
    filters: KpiFilters | None = strawberry.UNSET
    currency: str | None = strawberry.field(
        default=strawberry.UNSET,
        description="ISO 4217 code amounts are converted to; default: the tenant's "
        "reporting currency",
    )
    compare_to: Comparison | None = strawberry.field(
        default=strawberry.UNSET, description="Fills previous and change of every value"
    )
    # Extensions of CONTRACT §5: the top N of each period, e.g. the 50 best SKUs.
    order_by: KpiOrder | None = strawberry.UNSET
    limit: int | None = strawberry.field(
        default=strawberry.UNSET, description="At most this many rows a period (1 to 10,000)."
    )

    def __post_init__(self) -> None:
        absent_as_none(self)


@strawberry.type(description="A group's value of one dimension")
class DimensionValue:
    key: str = strawberry.field(description="The dimension, as groupBy names it: marketplace")
    value: str | None = strawberry.field(
        description='Its value: US; "" for lines without one (a SKU or category not given)'
    )


@strawberry.type(description="One metric of a row")
class MetricValue:
    metric: str = strawberry.field(description="The KPI id asked for")
    value: float | None = strawberry.field(
        description="Null when it has no value: a ratio over zero, or an amount without "
        "an FX rate (named in warnings)"
    )
    previous: float | None = strawberry.field(
        description="The same metric over the same bucket one period (or year) earlier; "
        "null without compareTo"
    )
    change: float | None = strawberry.field(
        description="(value - previous) / |previous|; null when either is null or previous is 0"
    )


@strawberry.type(description="One bucket of one group; rows come by period, then dimensions")
class KpiRow:
    period: str = strawberry.field(
        description="The bucket's first local date (2026-01-01; a bucket cut by from keeps "
        "its own first date), or TOTAL"
    )
    dimensions: list[DimensionValue] = strawberry.field(
        description="The group's values, in groupBy's order"
    )
    values: list[MetricValue] = strawberry.field(description="In the order metrics asked")


@strawberry.type(description="The answer to a KPI question")
class KpiResult:
    currency: str | None = strawberry.field(description="The currency of every amount")
    rows: list[KpiRow]
    warnings: list[str] = strawberry.field(
        description="What made a value null or partial (a missing FX rate, with its days)"
    )


@strawberry.type(description="A KPI the engine computes, as the tenant's settings define it")
class KpiDefinition:
    id: str = strawberry.field(description="What metrics names it by")
    name: str
    unit: str = strawberry.field(description="money, count, ratio, days, hours or score")
    direction: str = strawberry.field(description="up or down: which way is better")
    description: str = strawberry.field(description="Its definition, in the tenant's settings")
