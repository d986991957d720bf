"""KPI answers over REST, hand-computed: orders, grains, groups, comparison, currency."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest

from services.metrics.kpis.query import parse_query
from services.metrics.kpis.registry import KPIS
from shared.errors import InvalidInput
from tests.conftest import NewTenant, TenantClient


def line(
    event_id: str,
    order_id: str,
    quantity: int,
    price: str,
    purchased_at: str,
    *,
    status: str = "shipped",
    currency: str = "USD",
    store: str = "acme-us",
    marketplace: str = "US",
    shipping: str | None = None,
    discount: str | None = None,
    tax: str | None = None,
    sku: str = "LAMP-01",
) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "order_id": order_id,
        "line_id": event_id,
        "sku": sku,
        "quantity": quantity,
        "unit_price": {"amount": price, "currency": currency},
        "status": status,
        "purchased_at": purchased_at,
    }
    for name, amount in (("shipping_price", shipping), ("discount", discount), ("item_tax", tax)):
        if amount is not None:
            payload[name] = {"amount": amount, "currency": currency}
    return {
        "event_id": event_id,
        "type": "order_line",
        "source": {"platform": "amazon", "store_id": store, "marketplace": marketplace},
        "occurred_at": purchased_at,
        "payload": payload,
    }


async def seed(http: httpx.AsyncClient, tenant: TenantClient, events: list[dict[str, Any]]) -> None:
    response = await http.post("/v1/events", json={"events": events}, headers=tenant.headers)
    assert response.status_code == 202, response.text
    # Applied once the newest event's order shows up in the total order count.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        body = await kpis(
            http,
            tenant,
            metrics="units",
            grain="total",
            **{"from": "2020-01-01", "to": "2030-12-31"},
        )
        expected = sum(
            e["payload"]["quantity"] for e in events if e["payload"]["status"] != "cancelled"
        )
        if body["rows"][0]["values"][0]["value"] == expected:
            return
        await asyncio.sleep(0.2)
    raise AssertionError("events were not applied in time")


async def kpis(http: httpx.AsyncClient, tenant: TenantClient, **params: str) -> dict[str, Any]:
    response = await http.get("/v1/kpis", params=params, headers=tenant.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def values(body: dict[str, Any]) -> list[tuple[str, list[str | None], dict[str, float | None]]]:
    return [
        (
            row["period"],
            [d["value"] for d in row["dimensions"]],
            {v["metric"]: v["value"] for v in row["values"]},
        )
        for row in body["rows"]
    ]


async def test_gmv_orders_units_aov_by_month_hand_computed(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant()
    await seed(
        http,
        tenant,
        [
            # Order A: 2 x 10.00 + 5.00 shipping - 1.50 discount (tax 1.60 is excluded) = 23.50
            line(
                "a1",
                "A",
                2,
                "10.00",
                "2026-01-10T18:00:00Z",
                shipping="5.00",
                discount="1.50",
                tax="1.60",
            ),
            # Order B, partly cancelled: only the live line counts; still one order.
            line("b1", "B", 1, "7.25", "2026-01-20T18:00:00Z"),
            line("b2", "B", 3, "100.00", "2026-01-20T18:00:00Z", status="cancelled"),
            # Order C entirely cancelled: in nothing.
            line("c1", "C", 1, "50.00", "2026-01-21T18:00:00Z", status="cancelled"),
            # 23:30 on 28 February in Los Angeles is already 1 March in UTC.
            line("d1", "D", 1, "12.34", "2026-03-01T07:30:00Z"),
        ],
    )
    body = await kpis(
        http,
        tenant,
        metrics="gmv,orders,units,aov",
        grain="month",
        **{"from": "2026-01-01", "to": "2026-03-31"},
    )
    assert body["currency"] == "USD"
    assert body["warnings"] == []
    assert values(body) == [
        ("2026-01-01", [], {"gmv": 30.75, "orders": 2.0, "units": 3.0, "aov": 15.375}),
        ("2026-02-01", [], {"gmv": 12.34, "orders": 1.0, "units": 1.0, "aov": 12.34}),
        ("2026-03-01", [], {"gmv": 0.0, "orders": 0.0, "units": 0.0, "aov": None}),
    ]
    # Codes are read in any case, as grains and platforms are.
    lower = await kpis(
        http,
        tenant,
        metrics="gmv,orders,units,aov",
        grain="month",
        currency="usd",
        marketplaces="us",
        **{"from": "2026-01-01", "to": "2026-03-31"},
    )
    assert lower["currency"] == "USD" and values(lower) == values(body)
    # A URL template's spaces and unset values: single values trimmed, empty as unset.
    spaced = await kpis(
        http,
        tenant,
        metrics="gmv,orders,units,aov",
        grain=" month ",
        currency="",
        compare_to="",
        order_by=" ",
        limit="",
        **{"from": " 2026-01-01", "to": "2026-03-31 "},
    )
    assert spaced["currency"] == "USD" and values(spaced) == values(body)


async def test_week_grain_and_group_by_store(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant()
    await seed(
        http,
        tenant,
        [
            line("w1", "W1", 1, "10.00", "2026-03-02T20:00:00Z"),  # Monday 2 March
            line("w2", "W2", 1, "20.00", "2026-03-08T20:00:00Z", store="acme-us-2"),  # Sunday
            line("w3", "W3", 1, "40.00", "2026-03-09T20:00:00Z"),  # next Monday
        ],
    )
    body = await kpis(
        http,
        tenant,
        metrics="gmv,orders",
        grain="week",
        group_by="store",
        **{"from": "2026-03-04", "to": "2026-03-10"},
    )
    # A bucket cut by `from` keeps its own first date.
    assert values(body) == [
        ("2026-03-02", ["acme-us-2"], {"gmv": 20.0, "orders": 1.0}),
        ("2026-03-09", ["acme-us"], {"gmv": 40.0, "orders": 1.0}),
    ]


async def test_a_group_every_line_left_has_no_row(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant()
    at = "2026-03-02T20:00:00Z"
    await seed(
        http,
        tenant,
        [line("a", "O1", 1, "10.00", at, sku="OLD"), line("b", "O2", 2, "5.00", at, sku="OLD")],
    )
    # New versions move both lines, and so both orders, to another store and SKU.
    moved = [
        {**line("a", "O1", 3, "10.00", at, store="acme-us-2", sku="NEW"), "version": 2},
        {**line("b", "O2", 2, "5.00", at, store="acme-us-2", sku="NEW"), "version": 2},
    ]
    await seed(http, tenant, moved)
    window = {"from": "2026-03-01", "to": "2026-03-31"}
    for group_by, kept in (("store", "acme-us-2"), ("sku", "NEW"), ("store,sku", None)):
        body = await kpis(
            http, tenant, metrics="gmv,orders,units,cancel_rate", grain="month",
            group_by=group_by, **window,
        )  # fmt: skip
        expected = [kept] if kept else ["acme-us-2", "NEW"]
        assert values(body) == [
            ("2026-03-01", expected,
             {"gmv": 40.0, "orders": 2.0, "units": 5.0, "cancel_rate": 0.0}),
        ], group_by  # fmt: skip


async def test_compare_to_previous_year_and_period(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant()
    await seed(
        http,
        tenant,
        [
            line("y1", "Y1", 1, "80.00", "2025-04-10T18:00:00Z"),
            line("y2", "Y2", 1, "50.00", "2026-03-10T18:00:00Z"),
            line("y3", "Y3", 1, "100.00", "2026-04-10T18:00:00Z"),
        ],
    )
    year = await kpis(
        http,
        tenant,
        metrics="gmv",
        grain="month",
        compare_to="previous_year",
        **{"from": "2026-04-01", "to": "2026-04-30"},
    )
    assert year["rows"][0]["values"][0] == {
        "metric": "gmv",
        "value": 100.0,
        "previous": 80.0,
        "change": 0.25,
    }
    period = await kpis(
        http,
        tenant,
        metrics="gmv",
        grain="month",
        compare_to="previous_period",
        **{"from": "2026-04-01", "to": "2026-04-30"},
    )
    assert period["rows"][0]["values"][0]["previous"] == 50.0
    assert period["rows"][0]["values"][0]["change"] == 1.0


async def test_compared_buckets_are_whole_weeks_and_months(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    """A week a year earlier is the week 52 weeks back (2026-W10 against 2025-W10), and
    a month ending on the 30th compares with the whole 31-day month before it."""
    tenant = await new_tenant()
    await seed(
        http,
        tenant,
        [
            # Wednesday of ISO week 10 of 2025 (3-9 March), and of 2026 (2-8 March).
            line("w1", "W1", 1, "40.00", "2025-03-05T18:00:00Z"),
            line("w2", "W2", 1, "60.00", "2026-03-04T18:00:00Z"),
            # 31 August, noon in Los Angeles: the last day of the month before September.
            line("m1", "M1", 1, "100.00", "2026-08-31T19:00:00Z"),
        ],
    )
    week = await kpis(
        http, tenant, metrics="gmv", grain="week", compare_to="previous_year",
        **{"from": "2026-03-02", "to": "2026-03-08"},
    )  # fmt: skip
    assert week["rows"][0]["period"] == "2026-03-02"
    assert week["rows"][0]["values"][0] == {
        "metric": "gmv", "value": 60.0, "previous": 40.0, "change": 0.5,
    }  # fmt: skip
    september = await kpis(
        http, tenant, metrics="gmv,orders", grain="month", compare_to="previous_period",
        **{"from": "2026-09-01", "to": "2026-09-30"},
    )  # fmt: skip
    assert [v["previous"] for v in september["rows"][0]["values"]] == [100.0, 1.0]


async def test_a_bucket_cut_by_from_compares_with_the_same_dates_one_period_back(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    """16 to 28 February against 16 to 28 January, not to the 31st (13 days against
    16), whether or not later months are asked too; a range that covers its last month
    from the 1st still takes the whole month."""
    tenant = await new_tenant()
    await seed(
        http,
        tenant,
        [
            # Noon in Los Angeles on each day.
            line("j15", "J", 1, "1.00", "2026-01-15T20:00:00Z"),
            line("j28", "J", 1, "10.00", "2026-01-28T20:00:00Z"),
            line("j29", "J", 1, "100.00", "2026-01-29T20:00:00Z"),
            line("j31", "J", 1, "1000.00", "2026-01-31T20:00:00Z"),
            line("m30", "J", 1, "10000.00", "2026-03-30T19:00:00Z"),
            line("m31", "J", 1, "100000.00", "2026-03-31T19:00:00Z"),
            line("f20", "J", 1, "20.00", "2028-02-20T20:00:00Z"),
            line("f29", "J", 1, "200.00", "2028-02-29T20:00:00Z"),
        ],
    )

    async def previous(start: str, end: str, grain: str = "month") -> list[float]:
        answer = await kpis(
            http, tenant, metrics="gmv", grain=grain, compare_to="previous_period",
            **{"from": start, "to": end},
        )  # fmt: skip
        return [row["values"][0]["previous"] for row in answer["rows"]]

    assert await previous("2026-02-16", "2026-02-28") == [10.0]
    assert await previous("2026-02-16", "2026-02-27") == [0.0]
    # The last day of April alone is the 30th of March, not the 31st.
    assert await previous("2026-04-30", "2026-04-30") == [10000.0]
    assert await previous("2026-06-30", "2026-06-30", grain="quarter") == [10000.0]
    # Covering February from the 1st: the whole of January; a range from inside
    # January by month, its cut January from the same day of December, then all of it.
    assert await previous("2026-02-01", "2026-02-28") == [1111.0]
    # By month from inside February to March's end, February's row too compares with
    # 16 to 28 January, and March's with the whole of February (none).
    assert await previous("2026-02-16", "2026-03-31") == [10.0, 0.0]
    # A year back, from inside a February to a later month: the 28th of the leap
    # February, not the 29th, as for that February alone.
    for end in ("2029-02-28", "2029-03-31"):
        answer = await kpis(
            http, tenant, metrics="gmv", grain="month", compare_to="previous_year",
            **{"from": "2029-02-16", "to": end},
        )  # fmt: skip
        assert answer["rows"][0]["values"][0]["previous"] == 20.0, end


async def test_a_year_earlier_is_the_same_date_around_29_february(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    """28 February 2025 compares with 28 February 2024, not with the 29th, the month's
    last day; a range ending on the last day of February still takes all of it."""
    tenant = await new_tenant()
    await seed(
        http,
        tenant,
        [
            line("d28", "D", 1, "10.00", "2024-02-28T20:00:00Z"),
            line("d29", "D", 1, "100.00", "2024-02-29T20:00:00Z"),
            line("m01", "D", 1, "1000.00", "2024-03-01T20:00:00Z"),
            line("n28", "D", 1, "1.00", "2025-02-28T20:00:00Z"),
        ],
    )
    days = await kpis(
        http, tenant, metrics="gmv", grain="day", compare_to="previous_year",
        **{"from": "2025-02-27", "to": "2025-03-01"},
    )  # fmt: skip
    assert [(r["period"], r["values"][0]["previous"]) for r in days["rows"]] == [
        ("2025-02-27", 0.0),
        ("2025-02-28", 10.0),
        ("2025-03-01", 1000.0),
    ]
    total = await kpis(
        http, tenant, metrics="gmv", grain="total", compare_to="previous_year",
        **{"from": "2025-02-28", "to": "2025-03-01"},
    )  # fmt: skip
    assert total["rows"][0]["values"][0]["previous"] == 1110.0
    february = await kpis(
        http, tenant, metrics="gmv", grain="total", compare_to="previous_year",
        **{"from": "2025-02-01", "to": "2025-02-28"},
    )  # fmt: skip
    assert february["rows"][0]["values"][0]["previous"] == 110.0
    # A range starting inside February compares with the same dates: 28 February alone
    # is the 28th a year back at every grain, as at DAY (it was the 28th and 29th at
    # TOTAL, MONTH and YEAR: +20% beside -20% for one day). At YEAR grain a period is a
    # year, so both comparisons give one answer.
    for grain, compare_to in (
        ("total", "previous_year"),
        ("month", "previous_year"),
        ("quarter", "previous_year"),
        ("year", "previous_year"),
        ("year", "previous_period"),
    ):
        one_day = await kpis(
            http, tenant, metrics="gmv", grain=grain, compare_to=compare_to,
            **{"from": "2025-02-28", "to": "2025-02-28"},
        )  # fmt: skip
        assert one_day["rows"][0]["values"][0]["previous"] == 10.0, (grain, compare_to)
    # A range from the month's first day ending on its last still takes all of it.
    whole = await kpis(
        http, tenant, metrics="gmv", grain="month", compare_to="previous_year",
        **{"from": "2025-01-15", "to": "2025-02-28"},
    )  # fmt: skip
    assert [r["values"][0]["previous"] for r in whole["rows"]] == [0.0, 110.0]
    # A year from 29 February compares with the year before it, never with its own
    # first day: 28 February 2023 to the 28th of 2024 (the 29th is in the range).
    year = await kpis(
        http, tenant, metrics="gmv", grain="total", compare_to="previous_year",
        **{"from": "2024-02-29", "to": "2025-02-28"},
    )  # fmt: skip
    assert year["rows"][0]["values"][0]["value"] == 1101.0
    assert year["rows"][0]["values"][0]["previous"] == 10.0
    # The same dates a year back may reach into the range, as its years do at YEAR
    # grain: 1 March 2024 to 1 March 2025 compares with 1 March 2023 to 1 March 2024.
    for grain in ("total", "year"):
        overlapping = await kpis(
            http, tenant, metrics="gmv", grain=grain, compare_to="previous_year",
            **{"from": "2024-03-01", "to": "2025-03-01"},
        )  # fmt: skip
        previous = sum(row["values"][0]["previous"] for row in overlapping["rows"])
        assert previous == 1110.0, grain


async def test_both_days_of_a_leap_february_end_compare_with_the_28th_in_every_group(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    """28 and 29 February 2028 both compare with 28 February 2027: a group that sold
    only then has a row on each day, so groups add up to the total."""
    tenant = await new_tenant()
    await seed(
        http,
        tenant,
        [
            line("de", "DE1", 1, "15.00", "2027-02-28T12:00:00Z", marketplace="DE", currency="EUR"),
            line("us", "US1", 1, "3.00", "2028-02-28T20:00:00Z"),
        ],
    )
    params = {"from": "2028-02-27", "to": "2028-03-01", "grain": "day",
              "compare_to": "previous_year", "currency": "EUR"}  # fmt: skip
    grouped = await kpis(http, tenant, metrics="gmv", group_by="marketplace", **params)
    rows = {
        (r["period"], r["dimensions"][0]["value"]): r["values"][0]["previous"]
        for r in grouped["rows"]
    }
    assert rows[("2028-02-28", "DE")] == rows[("2028-02-29", "DE")] == 15.0
    total = await kpis(http, tenant, metrics="gmv", **params)
    by_day = {r["period"]: r["values"][0]["previous"] for r in total["rows"]}
    for day in ("2028-02-28", "2028-02-29"):
        assert by_day[day] == sum(p for (d, _), p in rows.items() if d == day and p)


async def test_other_currencies_are_null_with_a_warning(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant()
    await seed(
        http,
        tenant,
        [
            line("u1", "U1", 1, "10.00", "2026-06-10T18:00:00Z"),
            line("m1", "M1", 1, "200.00", "2026-06-11T18:00:00Z", currency="MXN", marketplace="MX"),
        ],
    )
    body = await kpis(
        http,
        tenant,
        metrics="gmv,orders",
        grain="total",
        currency="USD",
        **{"from": "2026-06-01", "to": "2026-06-30"},
    )
    assert values(body) == [("TOTAL", [], {"gmv": None, "orders": 2.0})]
    assert body["warnings"] == ["no FX rate for MXN→USD on 2026-06-11"]
    by_market = await kpis(
        http,
        tenant,
        metrics="gmv",
        grain="total",
        group_by="marketplace",
        currency="USD",
        **{"from": "2026-06-01", "to": "2026-06-30"},
    )
    assert values(by_market) == [
        ("TOTAL", ["MX"], {"gmv": None}),
        ("TOTAL", ["US"], {"gmv": 10.0}),
    ]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"metrics": "gmv,nope"}, "metrics"),
        ({"from": "2026-13-01"}, "from"),
        ({"from": "2026-03-01", "to": "2026-02-01"}, "from"),
        ({"from": "2020-01-01", "to": "2026-01-01", "grain": "day"}, "to"),
        ({"grain": "hour"}, "grain"),
        ({"group_by": "color"}, "group_by"),
        ({"currency": "dollars"}, "currency"),
        # Shaped like a code, but no currency: a typo, not a rate that is missing.
        ({"currency": "XYZ"}, "currency"),
        ({"compare_to": "last_week"}, "compare_to"),
        # Shifted a year back or to a bucket's end, these once left the calendar: 500.
        ({"from": "0001-01-01", "to": "0001-01-31", "compare_to": "previous_year"}, "from"),
        ({"from": "9999-12-01", "to": "9999-12-31", "grain": "month"}, "to"),
        ({"skus": "A\x00"}, "skus"),
        # What no event can name: 257 characters, or 171 Chinese ones (513 bytes).
        ({"skus": "x" * 257}, "skus"),
        ({"stores": "店" * 171}, "stores"),
        # Misspelt, it would answer every marketplace's total.
        ({"marketplace": "US"}, "marketplace"),
        ({"metrics": "gmv,orders,gmv"}, "metrics"),
        ({"group_by": "sku,sku"}, "group_by"),
        ({"marketplaces": "US,ZZ"}, "marketplaces"),
        ({"from": "20260101"}, "from"),
        ({"to": "2026-W05-6"}, "to"),
        # Three years and a day at day grain.
        ({"from": "2023-01-01", "to": "2026-01-01", "grain": "day"}, "to"),
        ({"from": "2024-02-29", "to": "2027-03-01", "grain": "day"}, "to"),
        # Codes are ASCII: no other letter is read as one in upper or lower case.
        ({"currency": "\u00dfp"}, "currency"),
        ({"currency": "\u0131nr"}, "currency"),
        ({"marketplaces": "\u017fe"}, "marketplaces"),
        ({"group_by": "s\u212au"}, "group_by"),
        ({"grain": "\u0130ay"}, "grain"),
    ],
)
async def test_bad_parameters_are_422_naming_them(
    http: httpx.AsyncClient, new_tenant: NewTenant, params: dict[str, str], field: str
) -> None:
    tenant = await new_tenant(scopes=["kpi:read"])
    query = {"metrics": "gmv", "from": "2026-01-01", "to": "2026-01-31", "grain": "day", **params}
    response = await http.get("/v1/kpis", params=query, headers=tenant.headers)
    assert response.status_code == 422, response.text
    assert field in [e["field"] for e in response.json()["errors"]]


async def test_another_tenants_id_is_forbidden(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    seller, other = await new_tenant(scopes=["kpi:read"]), await new_tenant(scopes=["kpi:read"])
    response = await http.get(
        "/v1/kpis",
        params={
            "metrics": "gmv",
            "from": "2026-01-01",
            "to": "2026-01-31",
            "grain": "total",
            "tenant_id": other.tenant_id,
        },
        headers=seller.headers,
    )
    assert response.status_code == 403
    assert response.json()["error"] == "forbidden"


async def test_top_n_per_period_by_a_metric(http: httpx.AsyncClient, new_tenant: NewTenant) -> None:
    tenant = await new_tenant()
    events = [
        line("t1", "T1", 1, "30.00", "2026-03-10T18:00:00Z", sku="A"),
        line("t2", "T2", 1, "10.00", "2026-03-10T18:00:00Z", sku="B"),
        line("t3", "T3", 1, "20.00", "2026-03-10T18:00:00Z", sku="C"),
        line("t4", "T4", 1, "5.00", "2026-04-10T18:00:00Z", sku="B"),
    ]
    pushed = await http.post("/v1/events", json={"events": events}, headers=tenant.headers)
    assert pushed.status_code == 202
    window = {"from": "2026-03-01", "to": "2026-04-30", "grain": "month", "group_by": "sku"}
    for _ in range(150):
        body = await kpis(http, tenant, metrics="gmv", **window)
        if len(body["rows"]) == 4:
            break
        await asyncio.sleep(0.2)
    top = await kpis(http, tenant, metrics="units,gmv", order_by="gmv", limit="2", **window)
    assert [(r["period"], r["dimensions"][0]["value"]) for r in top["rows"]] == [
        ("2026-03-01", "A"),
        ("2026-03-01", "C"),
        ("2026-04-01", "B"),
    ]
    bottom = await kpis(http, tenant, metrics="gmv", order_by="gmv:asc", limit="1", **window)
    assert [r["dimensions"][0]["value"] for r in bottom["rows"]] == ["B", "B"]
    graphql = await http.post(
        "/graphql",
        json={
            "query": "query($i: KpiQueryInput!) { kpis(input: $i) { rows { dimensions { value } } } }",
            "variables": {
                "i": {
                    "metrics": ["gmv"],
                    "from": "2026-03-01",
                    "to": "2026-03-31",
                    "grain": "TOTAL",
                    "groupBy": ["SKU"],
                    "orderBy": {"metric": "gmv"},
                    "limit": 1,
                }
            },
        },
        headers=tenant.headers,
    )
    assert graphql.json()["data"]["kpis"]["rows"] == [{"dimensions": [{"value": "A"}]}]
    for params, field in (
        ({"order_by": "cogs"}, "order_by"),
        ({"order_by": "gmv:sideways"}, "order_by"),
        ({"limit": "0"}, "limit"),
        ({"limit": "lots"}, "limit"),
    ):
        refused = await http.get(
            "/v1/kpis", params={"metrics": "gmv", **window, **params}, headers=tenant.headers
        )
        assert refused.status_code == 422, params
        assert refused.json()["errors"][0]["field"] == field, params


async def test_the_api_document_defines_every_available_kpi_as_the_registry_does(
    http: httpx.AsyncClient,
) -> None:
    document = (await http.get("/openapi.json")).json()
    described = document["paths"]["/v1/kpis"]["get"]["description"]
    for kpi in KPIS.values():
        row = f"| `{kpi.id}` | {kpi.name} | {kpi.unit} | {kpi.description} |"
        assert (row in described) == kpi.available, kpi.id
    # Both routes say the tag they answer with, and their 304, for clients that poll.
    for path in ("/v1/kpis", "/v1/kpis/catalog"):
        responses = document["paths"][path]["get"]["responses"]
        for status in ("200", "304"):
            assert "ETag" in responses[status]["headers"], (path, status)


def test_a_blank_metric_or_marketplace_is_shown_as_blank() -> None:
    """Named as nothing at all, the reason began with a colon."""
    asked = {"from": "2026-01-01", "to": "2026-01-31", "grain": "day"}
    for params, reason in (
        ({"metrics": 'gmv,""'}, 'unknown metric ""'),
        (
            {"metrics": "gmv", "marketplaces": '""'},
            '"": must be an ISO 3166 country code such as US',
        ),
    ):
        with pytest.raises(InvalidInput) as refused:
            parse_query("t1", {**asked, **params})
        assert [e.reason for e in refused.value.errors] == [reason]
