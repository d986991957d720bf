"""KPI queries: parameters, periods, comparison and the answer's shape.

Every value is computed from summed parts of the whole bucket (ratios never average
daily ratios), in exact decimals until the answer is rendered.
"""

from __future__ import annotations

import calendar
import heapq
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from services.metrics.kpis.formulas import EXACT, FORMULAS
from services.metrics.kpis.registry import KPIS
from shared.errors import FieldError, InvalidInput
from shared.events import IDENTIFIER_LIMIT, NO_NUL, is_identifier_length
from shared.http import TOO_MANY_ROWS
from shared.money import CURRENCY_REASON, is_currency
from shared.query_lists import code_lower, code_upper, split_list
from shared.time import DATE_RANGE, DATE_TEXT, country_code, in_date_range

GRAINS = ("day", "week", "month", "quarter", "year", "total")
DIMENSIONS = ("platform", "store", "marketplace", "sku", "category")
COMPARISONS = ("previous_period", "previous_year")
FILTERS = {
    "platforms": "platform",
    "stores": "store",
    "marketplaces": "marketplace",
    "skus": "sku",
    "categories": "category",
}
FILTER_OF = {dimension: name for name, dimension in FILTERS.items()}
MAX_DAY_GRAIN_YEARS = 3
MAX_RANGE_YEARS = 20
TOTAL = "TOTAL"

DimKey = tuple[str, ...]
RowKey = tuple[str, DimKey]


@dataclass(frozen=True)
class KpiQuery:
    tenant_id: str
    metrics: list[str]
    start: date
    end: date
    grain: str
    group_by: list[str]
    filters: dict[str, list[str]]
    currency: str | None
    compare_to: str | None
    # Top N: rows of each period ordered by one metric's value, the first ``limit`` kept.
    order_by: str | None = None
    descending: bool = True
    limit: int | None = None
    # Rows the asker takes at most (GraphQL's, sent by the gateway): a larger answer is
    # refused as it grows, not built whole first. Not part of the question: the answer
    # and its key are the same whoever asks.
    most_rows: int | None = field(default=None, repr=False, compare=False)

    def unsplittable(self) -> dict[str, str]:
        """Each metric asked that cannot be split as asked, and the first dimension (of
        the groups, then the filters) it cannot be split by: account health has no SKU
        or category. Such a metric answers null with a warning, and the others of the
        question are answered: a table of every KPI by SKU keeps its columns."""
        asked = [*self.group_by, *self.filters]
        found = {}
        for metric in self.metrics:
            formula = FORMULAS.get(metric)
            beyond = [d for d in asked if formula is not None and d not in formula.dimensions]
            if beyond:
                found[metric] = beyond[0]
        return found

    def answerable(self) -> list[str]:
        """The metrics asked that ``unsplittable`` leaves."""
        unsplittable = self.unsplittable()
        return [m for m in self.metrics if m not in unsplittable]


MAX_LIMIT = 10_000


def answer_too_large(query: KpiQuery, most: int) -> InvalidInput:
    """Refuses a question whose answer grows past ``most`` rows: what makes it so large
    is its groups, or its periods when it has none."""
    field = "group_by" if query.group_by else "grain"
    return InvalidInput(
        f"{TOO_MANY_ROWS} {most:,} rows",
        [
            FieldError(
                field=field,
                reason=f"more than {most:,} rows of periods and groups; ask for "
                "fewer days, a coarser grain, fewer groups or narrower filters",
            )
        ],
    )


_WHOLE_NUMBER = re.compile(r"[0-9]{1,9}")


def _date(name: str, value: str | None, errors: list[FieldError]) -> date | None:
    if not value:
        errors.append(FieldError(field=name, reason="required, a date such as 2026-01-31"))
        return None
    try:
        if not DATE_TEXT.match(value):
            raise ValueError(value)
        day = date.fromisoformat(value)
    except ValueError:
        errors.append(FieldError(field=name, reason=f"{value!r} is not a date such as 2026-01-31"))
        return None
    if not in_date_range(day):
        errors.append(FieldError(field=name, reason=f"must be {DATE_RANGE}"))
        return None
    return day


_SINGLE_VALUES = frozenset(("from", "to", "grain", "currency", "compare_to", "order_by", "limit"))


def parse_query(tenant_id: str, params: dict[str, str | None]) -> KpiQuery:
    """Checks the REST parameters; every problem is named by its parameter."""
    # URL templates leave spaces around a value and send an unset one empty: a single
    # value is read trimmed, and an empty one as not given, as lists read theirs.
    params = {
        name: (value.strip() or None) if name in _SINGLE_VALUES and value is not None else value
        for name, value in params.items()
    }
    errors: list[FieldError] = []
    metrics = split_list(params.get("metrics"), "metrics")
    if not metrics:
        errors.append(FieldError(field="metrics", reason="required, e.g. metrics=gmv,orders"))
    errors += _named_twice("metrics", metrics)
    for metric in metrics:
        definition = KPIS.get(metric)
        if definition is None:
            shown = metric or '""'
            errors.append(FieldError(field="metrics", reason=f"unknown metric {shown}"))
        elif not definition.available:
            errors.append(FieldError(field="metrics", reason=f"{metric} is not available yet"))
    start = _date("from", params.get("from"), errors)
    end = _date("to", params.get("to"), errors)
    grain = code_lower(params.get("grain") or "")
    if grain not in GRAINS:
        errors.append(FieldError(field="grain", reason=f"one of {', '.join(GRAINS)}"))
    if start and end:
        if start > end:
            errors.append(FieldError(field="from", reason="must not be after to"))
        elif grain == "day" and end >= _anniversary(start, MAX_DAY_GRAIN_YEARS):
            errors.append(FieldError(field="to", reason="at most 3 years at day grain"))
        elif end >= _anniversary(start, MAX_RANGE_YEARS):
            errors.append(FieldError(field="to", reason=f"at most {MAX_RANGE_YEARS} years"))
    group_by = [code_lower(d) for d in split_list(params.get("group_by"), "group_by")]
    errors += _named_twice("group_by", group_by)
    for dimension in group_by:
        if dimension not in DIMENSIONS:
            errors.append(
                FieldError(field="group_by", reason=f"{dimension}: one of {', '.join(DIMENSIONS)}")
            )
    filters = {FILTERS[name]: split_list(params.get(name), name) for name in FILTERS}
    filters = {dimension: values for dimension, values in filters.items() if values}
    if "platform" in filters:
        # As events are stored: "Amazon" is pushed and kept as "amazon".
        filters["platform"] = [value.lower() for value in filters["platform"]]
    if "marketplace" in filters:
        filters["marketplace"] = marketplace_codes(filters["marketplace"])
    for marketplace in filters.get("marketplace", []):
        try:
            country_code(marketplace)
        except ValueError as exc:
            shown = marketplace or '""'
            errors.append(FieldError(field="marketplaces", reason=f"{shown}: {exc}"))
    for dimension, values in filters.items():
        if any("\x00" in value for value in values):
            errors.append(FieldError(field=FILTER_OF[dimension], reason=NO_NUL))
        if not all(is_identifier_length(value) for value in values):
            reason = f"each {IDENTIFIER_LIMIT}"
            errors.append(FieldError(field=FILTER_OF[dimension], reason=reason))
    currency = params.get("currency")
    # A currency code, kept upper case: "eur" asks for EUR.
    currency = code_upper(currency) if currency is not None else None
    if currency is not None and not is_currency(currency):
        errors.append(FieldError(field="currency", reason=CURRENCY_REASON))
    compare_to = code_lower(params.get("compare_to") or "") or None
    if compare_to is not None and compare_to not in COMPARISONS:
        errors.append(FieldError(field="compare_to", reason=f"one of {', '.join(COMPARISONS)}"))
    order_by, descending = None, True
    if params.get("order_by"):
        metric, colon, direction = str(params["order_by"]).partition(":")
        order_by, descending = metric.strip(), code_lower(direction.strip()) != "asc"
        if order_by not in metrics:
            errors.append(FieldError(field="order_by", reason="must be one of the metrics asked"))
        # A metric alone is descending; a colon names a direction.
        if code_lower(direction.strip()) not in (("asc", "desc") if colon else ("",)):
            errors.append(FieldError(field="order_by", reason="metric:desc or metric:asc"))
    limit = None
    if params.get("limit"):
        raw_limit = str(params["limit"])
        # ASCII digits only: int() also reads "+2", full-width and Arabic-Indic digits.
        if not _WHOLE_NUMBER.fullmatch(raw_limit) or not 1 <= int(raw_limit) <= MAX_LIMIT:
            errors.append(FieldError(field="limit", reason=f"a whole number, 1 to {MAX_LIMIT}"))
        else:
            limit = int(raw_limit)
    if errors:
        raise InvalidInput("; ".join(f"{e.field}: {e.reason}" for e in errors), errors)
    assert start is not None and end is not None
    return KpiQuery(
        tenant_id=tenant_id,
        metrics=metrics,
        start=start,
        end=end,
        grain=grain,
        group_by=group_by,
        filters=filters,
        currency=currency,
        compare_to=compare_to,
        order_by=order_by,
        descending=descending,
        limit=limit,
    )


def _named_twice(field: str, names: list[str]) -> list[FieldError]:
    # Values come back in the order asked: a repeat would shift every one after it.
    repeated = [name for name in dict.fromkeys(names) if names.count(name) > 1]
    return [FieldError(field=field, reason=f"{name} is named twice") for name in repeated]


def period_start(day: date, grain: str) -> date:
    if grain == "week":
        return day - timedelta(days=day.weekday())
    if grain == "month":
        return day.replace(day=1)
    if grain == "quarter":
        return day.replace(month=(day.month - 1) // 3 * 3 + 1, day=1)
    if grain == "year":
        return day.replace(month=1, day=1)
    return day


def all_periods(start: date, end: date, grain: str) -> list[str]:
    if grain == "total":
        return [TOTAL]
    periods: list[str] = []
    current = period_start(start, grain)
    while current <= end:
        periods.append(current.isoformat())
        current = shift(current, grain, forward=True)
    return periods


def _anniversary(day: date, years: int) -> date:
    """The same date ``years`` later; 29 February's is 1 March in a common year, so a
    range from it may end on 28 February as any other range ends the day before."""
    try:
        return day.replace(year=day.year + years)
    except ValueError:
        return date(day.year + years, 3, 1)


def _add_months(day: date, months: int, month_end: bool) -> date:
    """The same day number ``months`` later (or earlier), clamped to the month's length
    (30 April is 30 March, 31 March is 28 February); with ``month_end``, a month's last
    day stays its last day, so a range ending on 30 September compares with one ending
    on 31 August, the whole month."""
    month_index = day.year * 12 + day.month - 1 + months
    year, month = divmod(month_index, 12)
    month += 1
    last = calendar.monthrange(year, month)[1]
    if month_end and (day + timedelta(days=1)).month != day.month:
        return date(year, month, last)
    return date(year, month, min(day.day, last))


def shift(day: date, grain: str, forward: bool = False, month_end: bool = True) -> date:
    """One period of ``grain`` earlier (or later); ``month_end`` as ``_add_months``."""
    sign = 1 if forward else -1
    if grain == "day":
        return day + timedelta(days=sign)
    if grain == "week":
        return day + timedelta(days=7 * sign)
    months = {"month": 1, "quarter": 3}.get(grain, 12)
    return _add_months(day, months * sign, month_end)


@dataclass(frozen=True)
class ComparisonRange:
    start: date
    end: date

    def previous_period(self, period: str, query: KpiQuery) -> str:
        if period == TOTAL:
            return TOTAL
        if _a_year_back(query):
            return _year_earlier(date.fromisoformat(period), query.grain).isoformat()
        return shift(date.fromisoformat(period), query.grain).isoformat()


def _a_year_back(query: KpiQuery) -> bool:
    """Whether the comparison is a year back: PREVIOUS_YEAR, or PREVIOUS_PERIOD at YEAR
    grain, where a period is a year and both must give one answer (a range from
    28 February 2029 compares with one from the 28th of 2028 either way)."""
    return query.compare_to == "previous_year" or (
        query.compare_to == "previous_period" and query.grain == "year"
    )


def _year_earlier(day: date, grain: str, *, range_end: bool = False) -> date:
    # A week a year earlier is the week 52 weeks earlier: it starts on a Monday too
    # (the same date a year back would fall inside another week, and match no bucket).
    if grain == "week":
        return day - timedelta(weeks=52)
    if range_end:
        # A range ending on 28 February 2025 compares with one ending on the 29th, the
        # whole month.
        return shift(day, "year")
    # A day, or a bucket's first day, is the same date a year back; 29 February, which
    # has none, the 28th. Never the month's last day: 28 February 2025 compares with
    # the 28th of 2024, not the 29th.
    return day.replace(year=day.year - 1, day=min(day.day, 28) if day.month == 2 else day.day)


def comparison_range(query: KpiQuery) -> ComparisonRange:
    if _a_year_back(query):
        # A range that ends a month it covers from the 1st compares with that whole
        # month; one that starts inside it (28 February alone) with the same dates, as
        # its days compare at DAY grain.
        whole_last_month = query.start <= query.end.replace(day=1)
        end = _year_earlier(query.end, query.grain, range_end=whole_last_month)
        same_dates_end = _year_earlier(query.end, query.grain)
        if query.grain == "total" and end >= query.start > same_dates_end:
            # A year from 29 February 2028: the whole February its 28 February 2029 end
            # compares with would take in the 29th of 2028, a day of the range itself.
            # The year before ends the day before. (The same dates a year back may
            # reach into the range: 15 June 2024 to 15 June 2025 compares with 15 June
            # 2023 to 15 June 2024, as its years do at YEAR grain.)
            end = query.start - timedelta(days=1)
        return ComparisonRange(_year_earlier(query.start, query.grain), end)
    if query.grain == "total":
        length = query.end - query.start + timedelta(days=1)
        return ComparisonRange(query.start - length, query.end - length)
    # As a year back: a range that ends a month it covers from the 1st compares with the
    # whole month before; one that starts inside it (16 to 28 February) with the same
    # dates (16 to 28 January, not to the 31st). A bucket cut by ``from`` is the same
    # cut range one period back, from the same day number.
    whole_last_month = query.start <= query.end.replace(day=1)
    return ComparisonRange(
        shift(query.start, query.grain, month_end=False),
        shift(query.end, query.grain, month_end=whole_last_month),
    )


def comparison_ranges(query: KpiQuery) -> list[ComparisonRange]:
    """The ranges the comparison reads: ``comparison_range``, or two when the first
    bucket is cut by ``from`` and its own comparison ends before the next bucket's
    starts. 16 February to 31 March by month compares February's 16th to 28th with
    January's 16th to 28th, as 16 to 28 February alone does, and March with the whole
    of February: January's last three days are in neither."""
    whole = comparison_range(query)
    first_bucket = period_start(query.start, query.grain)
    if query.grain in ("day", "week", "total") or first_bucket == query.start:
        return [whole]
    first_end = shift(first_bucket, query.grain, forward=True) - timedelta(days=1)
    if first_end >= query.end:
        return [whole]
    own = comparison_range(replace(query, end=first_end))
    rest = comparison_range(replace(query, start=first_end + timedelta(days=1)))
    if own.end + timedelta(days=1) >= rest.start:
        return [whole]
    return [own, rest]


@dataclass
class Measured:
    """Each row's metric values over one date range, and what could not be computed:
    ``unrated`` holds, by currency, the days whose amounts have no rate."""

    values: dict[RowKey, dict[str, Decimal | None]] = field(
        default_factory=lambda: defaultdict(dict)
    )
    warnings: list[str] = field(default_factory=list)
    unrated: dict[str, set[date]] = field(default_factory=dict)

    def joined(self, other: Measured) -> Measured:
        """The values of two ranges of other buckets, and the warnings of both: a
        currency's days without a rate in either named in one warning."""
        values = defaultdict(dict, self.values)
        values.update(other.values)
        return Measured(values, _warnings_of(self, other), _unrated_of(self, other))


def _warnings_of(*ranges: Measured) -> list[str]:
    return list(dict.fromkeys(w for measured in ranges for w in measured.warnings))


def _unrated_of(*ranges: Measured) -> dict[str, set[date]]:
    unrated: dict[str, set[date]] = defaultdict(set)
    for measured in ranges:
        for currency, days in measured.unrated.items():
            unrated[currency] |= days
    return dict(unrated)


def warnings_of(target: str | None, *ranges: Measured) -> list[str]:
    """The warnings of every range an answer read (asked and compared): a currency's
    days without a rate in any of them named in one warning, each day once."""
    unrated = _unrated_of(*ranges)
    return _warnings_of(*ranges) + [
        missing_rate_warning(currency, target or "", sorted(days))
        for currency, days in sorted(unrated.items())
        if days
    ]


# A warning names each day that lacks a rate up to this many, then how many more and
# the last: a month's days in full, and no year of dates in one line.
MAX_DAYS_NAMED = 31


def missing_rate_warning(currency: str, target: str, days: list[date]) -> str:
    """CONTRACT §4: names the currency and the days whose amounts have no rate."""
    named = ", ".join(day.isoformat() for day in days[:MAX_DAYS_NAMED])
    more = len(days) - MAX_DAYS_NAMED
    if more > 0:
        named += f" and {more} more day{'s' if more > 1 else ''}, the last {days[-1].isoformat()}"
    return f"no FX rate for {currency}→{target} on {named}"


def no_unit_cost_warning(sku: str, first_cost: date | None) -> str:
    """A SKU sold on a day before any unit cost of it takes effect: before its first, or
    at all when it has none."""
    if first_cost is None:
        return f"no unit cost for SKU {sku}"
    return f"no unit cost for SKU {sku} before {first_cost.isoformat()}"


def marketplace_codes(values: list[str]) -> list[str]:
    """Marketplaces as events keep them: a country code, upper case ("us" asks for US)."""
    return [code_upper(value) for value in values]


def _float(value: Decimal | None) -> float | None:
    # Adding zero turns a negative zero (0 / -5 keeps its sign) into the zero answers show.
    return None if value is None else float(value) + 0.0


def unsplittable_warning(metric: str, dimension: str) -> str:
    return f"{metric} is not available by {dimension}: its values are null"


def change(value: Decimal | None, previous: Decimal | None) -> float | None:
    if value is None or previous is None or previous == 0:
        return None
    return _float(EXACT.divide(EXACT.subtract(value, previous), abs(previous)))


def answer(
    query: KpiQuery,
    currency: str | None,
    current: Measured,
    previous: Measured | None,
    defaults: dict[str, Decimal | None],
) -> dict[str, Any]:
    """The answer of CONTRACT §6: rows sorted by period, then dimensions."""
    periods = all_periods(query.start, query.end, query.grain)
    keys = set(current.values)
    if not query.group_by:
        keys |= {(p, ()) for p in periods}
    if previous is not None:
        # A group with nothing now but something before has a row: its fall to zero
        # is what a comparison is asked for.
        compared = comparison_range(query)
        # Of a leap year's 28 and 29 February, both compare with the 28th a year back.
        now_of: dict[str, list[str]] = defaultdict(list)
        for period in periods:
            now_of[compared.previous_period(period, query)].append(period)
        keys |= {(now, dims) for p, dims in previous.values for now in now_of.get(p, ())}
    if query.order_by is not None or query.limit is not None:
        # Chosen before rows are built: a top 50 of 2,000 SKUs builds 50 rows.
        ordered = _top(keys, query, current, defaults)
    else:
        ordered = sorted(keys)  # (period, dimensions) tuples: by period, then dimensions
    rows = []
    for key in ordered:
        period, dims = key
        measured = current.values.get(key, {})
        earlier: dict[str, Decimal | None] = {}
        if previous is not None:
            previous_key = (compared.previous_period(period, query), dims)
            earlier = previous.values.get(previous_key, {})
        values = []
        for metric in query.metrics:
            value = measured.get(metric, defaults.get(metric))
            before = earlier.get(metric, defaults.get(metric)) if previous is not None else None
            values.append(
                {
                    "metric": metric,
                    "value": _float(value),
                    "previous": _float(before),
                    "change": change(value, before),
                }
            )
        rows.append(
            {
                "period": period,
                "dimensions": [
                    {"key": name, "value": value}
                    for name, value in zip(query.group_by, dims, strict=True)
                ],
                "values": values,
            }
        )
    unsplittable = [unsplittable_warning(m, d) for m, d in query.unsplittable().items()]
    ranges = (current,) if previous is None else (current, previous)
    warnings = list(dict.fromkeys(unsplittable + warnings_of(currency, *ranges)))
    return {"currency": currency, "rows": rows, "warnings": warnings}


def _top(
    keys: Iterable[RowKey], query: KpiQuery, current: Measured, defaults: dict[str, Decimal | None]
) -> list[RowKey]:
    """Each period's rows by the ``order_by`` metric (nulls last, ties by dimensions),
    at most ``limit`` of them; periods in order. Only the rows kept are sorted whole:
    a top 50 of 2,000 SKUs sorted every key first, which cost more than choosing."""
    by_period: dict[str, list[RowKey]] = defaultdict(list)
    for key in keys:
        by_period[key[0]].append(key)
    kept = []
    for period in sorted(by_period):
        period_keys = by_period[period]
        if query.order_by is None:
            period_keys.sort()
        else:
            period_keys = _ranked(period_keys, query, current, defaults.get(query.order_by))
        kept.extend(period_keys[: query.limit] if query.limit else period_keys)
    return kept


def _ranked(
    keys: list[RowKey], query: KpiQuery, current: Measured, default: Decimal | None
) -> list[RowKey]:
    """One period's keys by the ``order_by`` metric as answered (floats), ties by their
    dimensions, then those without a value; the first ``limit`` of them when given."""
    assert query.order_by is not None
    metric, sign = query.order_by, -1.0 if query.descending else 1.0
    valued, nulls = [], []
    for key in keys:
        value = _float(current.values.get(key, {}).get(metric, default))
        if value is None:
            nulls.append(key)
        else:
            valued.append((sign * value, key))
    if query.limit is not None and query.limit < len(valued):
        best = heapq.nsmallest(query.limit, valued)
    else:
        best = sorted(valued)
    return [key for _, key in best] + sorted(nulls)
