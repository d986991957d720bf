"""The GraphQL types of CONTRACT §5, named exactly as clients write them."""

from __future__ import annotations

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


@strawberry.enum
class Grain(Enum):
    DAY = "day"
    WEEK = "week"
    MONTH = "month"
    QUARTER = "quarter"
    YEAR = "year"
    TOTAL = "total"


@strawberry.enum
class Dimension(Enum):
    PLATFORM = "platform"
    STORE = "store"
    MARKETPLACE = "marketplace"
    SKU = "sku"
    CATEGORY = "category"


@strawberry.enum
class Comparison(Enum):
    PREVIOUS_PERIOD = "previous_period"
    PREVIOUS_YEAR = "previous_year"


@strawberry.enum
class SortDirection(Enum):
    DESC = "desc"
    ASC = "asc"


@strawberry.input(description="Orders each period's rows by one of the metrics asked for.")
class KpiOrder:
    metric: str
    direction: SortDirection = SortDirection.DESC


@strawberry.input
class KpiFilters:
    platforms: list[str] | None = None
    stores: list[str] | None = None
    marketplaces: list[str] | None = None
    skus: list[str] | None = None
    categories: list[str] | None = None


@strawberry.input
class KpiQueryInput:
    metrics: list[str]
    # "Date" (see DATE), serialised as "2026-01-31".
    from_: datetime.date = strawberry.field(name="from")
    to: datetime.date
    grain: Grain
    group_by: list[Dimension] | None = None
    filters: KpiFilters | None = None
    currency: str | None = None
    compare_to: Comparison | None = None
    # Extensions of CONTRACT §5: the top N of each period, e.g. the 50 best SKUs.
    order_by: KpiOrder | None = None
    limit: int | None = strawberry.field(
        default=None, description="At most this many rows a period (1 to 10,000)."
    )


@strawberry.type
class DimensionValue:
    key: str
    value: str | None


@strawberry.type
class MetricValue:
    metric: str
    value: float | None
    previous: float | None
    change: float | None


@strawberry.type
class KpiRow:
    period: str
    dimensions: list[DimensionValue]
    values: list[MetricValue]


@strawberry.type
class KpiResult:
    currency: str | None
    rows: list[KpiRow]
    warnings: list[str]


@strawberry.type
class KpiDefinition:
    id: str
    name: str
    unit: str
    direction: str
    description: str
