"""Top N per period, chosen before the answer's rows are built."""

from __future__ import annotations

from decimal import Decimal

from services.metrics.kpis.query import Measured, answer, parse_query


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
