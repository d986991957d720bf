"""Top N per period, chosen before the answer's rows are built."""

from __future__ import annotations

from decimal import Decimal

import pytest

from services.metrics.kpis.query import Measured, answer, parse_query
from shared.errors import InvalidInput


def test_top_n_keeps_nulls_last_ties_in_dimension_order_and_each_period_apart() -> None:
    params: dict[str, str | None] = {
        "metrics": "gmv",
        "from": "2026-03-01",
        "to": "2026-04-30",
        "grain": "month",
        "group_by": "sku",
        "order_by": "gmv:desc",
        "limit": "3",
    }
    query = parse_query("t1", params)
    current = Measured()
    march, april = "2026-03-01", "2026-04-01"
    for sku, gmv in (("A", "5"), ("B", None), ("C", "9"), ("D", "5"), ("E", "1")):
        current.values[(march, (sku,))]["gmv"] = None if gmv is None else Decimal(gmv)
    current.values[(april, ("B",))]["gmv"] = None
    current.values[(april, ("A",))]["gmv"] = Decimal("2")
    body = answer(query, "USD", current, None, {})
    assert [
        (r["period"], r["dimensions"][0]["value"], r["values"][0]["value"]) for r in body["rows"]
    ] == [
        (march, "C", 9.0),
        (march, "A", 5.0),
        (march, "D", 5.0),
        (april, "A", 2.0),
        (april, "B", None),
    ]
    ascending = parse_query("t1", {**params, "order_by": "gmv:asc", "limit": "2"})
    rows = answer(ascending, "USD", current, None, {})["rows"]
    assert [(r["period"], r["dimensions"][0]["value"]) for r in rows] == [
        (march, "E"),
        (march, "A"),
        (april, "A"),
        (april, "B"),
    ]


def test_order_and_limit_are_read_as_written() -> None:
    """A metric alone orders descending; a colon must name a direction. A limit is
    ASCII digits: full-width or Arabic-Indic ones, or a sign, are refused by name."""
    params: dict[str, str | None] = {
        "metrics": "gmv",
        "from": "2026-03-01",
        "to": "2026-03-31",
        "grain": "month",
    }
    assert parse_query("t1", {**params, "order_by": "gmv"}).descending
    for order_by in ("gmv:", "gmv:up"):
        with pytest.raises(InvalidInput) as refused:
            parse_query("t1", {**params, "order_by": order_by})
        assert [e.field for e in refused.value.errors] == ["order_by"], order_by
    for limit in ("+2", "\uff12", "\u0662", "2.0", "0"):
        with pytest.raises(InvalidInput) as refused:
            parse_query("t1", {**params, "limit": limit})
        assert [e.field for e in refused.value.errors] == ["limit"], limit
    assert parse_query("t1", {**params, "limit": "2"}).limit == 2
    day = "\uff12\uff10\uff12\uff16-03-01"
    with pytest.raises(InvalidInput) as refused:
        parse_query("t1", {**params, "from": day})
    assert refused.value.errors[0].reason == f"{day!r} is not a date such as 2026-01-31"


def test_a_zero_is_answered_without_a_sign() -> None:
    """0 / -5 is a negative zero in decimal arithmetic; answers write 0.0, never -0.0."""
    params: dict[str, str | None] = {
        "metrics": "refund_rate",
        "from": "2026-03-01",
        "to": "2026-03-01",
        "grain": "day",
    }
    current = Measured()
    current.values[("2026-03-01", ())]["refund_rate"] = Decimal(0) / Decimal(-5)
    [row] = answer(parse_query("t1", params), "USD", current, None, {})["rows"]
    assert str(row["values"][0]["value"]) == "0.0"
