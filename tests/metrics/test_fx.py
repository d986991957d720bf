"""FX rules of CONTRACT §4, on the rate book alone and through the API."""

from __future__ import annotations

import asyncio
import random
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import httpx

from services.metrics.fx.rates import REMEMBERED_CHARACTERS, RateBook
from services.metrics.kpis.query import MAX_DAYS_NAMED, missing_rate_warning
from tests.conftest import NewTenant
from tests.metrics.test_kpis import kpis, line, values
from tests.metrics.test_order_attached import push, rate, refund, settle
from tests.metrics.test_profit_and_ads import SOURCE, event

D = Decimal


def test_newest_rate_on_or_before_the_day_carries_forward() -> None:
    book = RateBook.from_rows(
        [(date(2026, 1, 2), "USD", "MXN", D("17")), (date(2026, 1, 5), "USD", "MXN", D("18"))]
    )
    # Saturday and Sunday have no rate: Friday's applies.
    assert book.factor("USD", "MXN", date(2026, 1, 3)) == D("17")
    assert book.factor("USD", "MXN", date(2026, 1, 4)) == D("17")
    assert book.factor("USD", "MXN", date(2026, 1, 5)) == D("18")
    assert book.factor("USD", "MXN", date(2026, 1, 1)) is None


def test_a_range_of_factors_is_each_day_s_factor_and_is_worked_out_once() -> None:
    book = RateBook.from_rows(
        [(date(2026, 1, 2), "USD", "MXN", D("17")), (date(2026, 1, 5), "USD", "MXN", D("16"))]
    )
    first = book.factors("MXN", "USD", date(2026, 1, 1), date(2026, 1, 5))
    seventeenth, sixteenth = str(1 / D("17")), str(1 / D("16"))
    assert first.text == f",{seventeenth},{seventeenth},{seventeenth},{sixteenth}"
    assert first.missing == (0,)
    assert book.factors("MXN", "USD", date(2026, 1, 1), date(2026, 1, 5)) is first
    # Another range, or another currency, is its own.
    assert book.factors("MXN", "USD", date(2026, 1, 4), date(2026, 1, 5)).text == (
        f"{seventeenth},{sixteenth}"
    )
    assert book.factors("USD", "MXN", date(2026, 1, 5), date(2026, 1, 5)).text == "16"


def test_a_range_worked_out_on_the_days_rates_change_is_every_day_s_factor() -> None:
    """Factors are worked out only where a rate of either currency's pairs is dated: on
    random books of direct, reversed and cross rates they are each day's ``factor``."""
    generator = random.Random(7)
    currencies = ["USD", "MXN", "EUR", "BRL", "JPY", "CNY"]
    for _ in range(40):
        rows = []
        for _ in range(generator.randint(1, 25)):
            base, quote = generator.sample(currencies, 2)
            day = date(2026, 1, 1) + timedelta(days=generator.randint(0, 60))
            rows.append((day, base, quote, D(generator.randint(1, 999)) / 7))
        book = RateBook.from_rows(rows)
        currency, target = generator.sample(currencies, 2)
        start = date(2026, 1, 1) + timedelta(days=generator.randint(0, 30))
        end = start + timedelta(days=generator.randint(0, 40))
        each_day = [
            book.factor(currency, target, start + timedelta(days=n))
            for n in range((end - start).days + 1)
        ]
        assert book.factors(currency, target, start, end).text == ",".join(
            "" if factor is None else str(factor) for factor in each_day
        )


def test_a_book_forgets_ranges_beyond_its_budget_of_characters() -> None:
    book = RateBook.from_rows([(date(2000, 1, 1), "USD", "MXN", D("3"))])
    twenty_years = book.factors("MXN", "USD", date(2000, 1, 1), date(2019, 12, 31))
    assert len(twenty_years.text) > REMEMBERED_CHARACTERS / 20
    # Twenty such ranges weigh more than a book keeps: the oldest is worked out again.
    for year in range(2001, 2021):
        book.factors("MXN", "USD", date(year, 1, 1), date(year + 19, 12, 31))
    assert book.factors("MXN", "USD", date(2000, 1, 1), date(2019, 12, 31)) is not twenty_years


def test_reverse_pair_divides_and_same_day_direct_wins() -> None:
    book = RateBook.from_rows(
        [(date(2026, 1, 1), "USD", "MXN", D("20")), (date(2026, 1, 1), "MXN", "USD", D("0.04"))]
    )
    assert book.factor("MXN", "USD", date(2026, 1, 1)) == D("0.04")
    assert book.factor("USD", "MXN", date(2026, 1, 1)) == D("20")
    only_reverse = RateBook.from_rows([(date(2026, 1, 1), "USD", "BRL", D("5"))])
    assert only_reverse.factor("BRL", "USD", date(2026, 1, 9)) == D(1) / D(5)
    # A newer reverse rate beats an older direct one.
    newer = RateBook.from_rows(
        [(date(2026, 1, 1), "MXN", "USD", D("0.05")), (date(2026, 1, 2), "USD", "MXN", D("25"))]
    )
    assert newer.factor("MXN", "USD", date(2026, 1, 3)) == D(1) / D(25)


def test_cross_rate_through_a_common_base() -> None:
    book = RateBook.from_rows(
        [(date(2026, 1, 1), "USD", "MXN", D("20")), (date(2026, 1, 1), "USD", "JPY", D("150"))]
    )
    # 1 MXN = 150 / 20 JPY
    assert book.factor("MXN", "JPY", date(2026, 1, 1)) == D("7.5")
    assert book.factor("JPY", "MXN", date(2026, 1, 1)) == D(20) / D(150)
    assert book.factor("EUR", "JPY", date(2026, 1, 1)) is None


def test_of_two_bases_the_one_with_the_newest_legs_wins() -> None:
    book = RateBook.from_rows(
        [
            # A year old, and first in alphabetical order.
            (date(2025, 3, 1), "EUR", "JPY", D("160")),
            (date(2025, 3, 1), "EUR", "BRL", D("5")),
            # Of the very day.
            (date(2026, 3, 5), "USD", "JPY", D("150")),
            (date(2026, 3, 5), "USD", "BRL", D("5")),
        ]
    )
    assert book.factor("BRL", "JPY", date(2026, 3, 5)) == D(30)
    # Before the USD legs exist, EUR's are all there is.
    assert book.factor("BRL", "JPY", date(2026, 3, 4)) == D(32)


def fx(event_id: str, day: str, base: str, quote: str, rate: str) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "type": "fx_rate",
        "source": {"platform": "erp", "store_id": "erp", "marketplace": "US"},
        "occurred_at": f"{day}T00:00:00Z",
        "payload": {"date": day, "base": base, "quote": quote, "rate": rate},
    }


async def test_gmv_converted_day_by_day_with_weekend_carry_forward(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant()
    events = [
        fx("fx-fri", "2026-01-02", "USD", "MXN", "20"),
        fx("fx-mon", "2026-01-05", "USD", "MXN", "16"),
        # Saturday 3 January in Mexico City: converted at Friday's rate, 200 / 20 = 10.
        line("s1", "S1", 1, "200.00", "2026-01-03T18:00:00Z", currency="MXN", marketplace="MX"),
        # Monday: 160 / 16 = 10.
        line("s2", "S2", 1, "160.00", "2026-01-05T18:00:00Z", currency="MXN", marketplace="MX"),
        line("s3", "S3", 1, "5.00", "2026-01-05T18:00:00Z"),
    ]
    response = await http.post("/v1/events", json={"events": events}, headers=tenant.headers)
    assert response.status_code == 202

    for _ in range(150):
        body = await kpis(
            http,
            tenant,
            metrics="gmv,orders",
            grain="total",
            currency="USD",
            **{"from": "2026-01-01", "to": "2026-01-31"},
        )
        if (
            body["rows"][0]["values"][1]["value"] == 3.0
            and body["rows"][0]["values"][0]["value"] == 25.0
        ):
            break
        await asyncio.sleep(0.2)
    assert values(body) == [("TOTAL", [], {"gmv": 25.0, "orders": 3.0})]
    assert body["warnings"] == []
    in_pesos = await kpis(
        http,
        tenant,
        metrics="gmv",
        grain="day",
        currency="MXN",
        group_by="marketplace",
        **{"from": "2026-01-05", "to": "2026-01-05"},
    )
    assert values(in_pesos) == [
        ("2026-01-05", ["MX"], {"gmv": 160.0}),
        ("2026-01-05", ["US"], {"gmv": 80.0}),
    ]
    # Before the first rate there is none: null and a warning naming currency and date.
    early = [
        line("e1", "E1", 1, "100.00", "2025-12-30T18:00:00Z", currency="MXN", marketplace="MX")
    ]
    await http.post("/v1/events", json={"events": early}, headers=tenant.headers)
    for _ in range(150):
        body = await kpis(
            http,
            tenant,
            metrics="gmv,orders",
            grain="month",
            currency="USD",
            **{"from": "2025-12-01", "to": "2026-01-31"},
        )
        if body["rows"][0]["values"][1]["value"] == 1.0:
            break
        await asyncio.sleep(0.2)
    assert values(body) == [
        ("2025-12-01", [], {"gmv": None, "orders": 1.0}),
        ("2026-01-01", [], {"gmv": 25.0, "orders": 3.0}),
    ]
    assert body["warnings"] == ["no FX rate for MXN→USD on 2025-12-30"]
    # A rate that comes late applies to the next answer: rates are read per data version.
    late_rate = [fx("fx-late", "2025-12-29", "USD", "MXN", "25")]
    await http.post("/v1/events", json={"events": late_rate}, headers=tenant.headers)
    december = {"from": "2025-12-01", "to": "2025-12-31", "currency": "USD"}
    await settle(http, tenant, {"gmv": 4.0}, **december)
    body = await kpis(http, tenant, metrics="gmv", grain="total", **december)
    assert body["warnings"] == []


async def test_a_cell_a_new_version_emptied_needs_no_rate(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant()
    # A refund in pesos moved by its v2 to a day with a rate, and one in yen (which has
    # no rate at all) turned by its v2 into dollars: the cells they left hold zeros.
    moved = refund("r-mx", "O1", "100.00", "MXN", "acme-mx", "MX")
    moved_v2 = refund("r-mx", "O1", "100.00", "MXN", "acme-mx", "MX", version=2)
    moved_v2["payload"]["refunded_at"] = "2026-04-20T18:00:00Z"
    yen = refund("r-jp", "O2", "500", "JPY", "acme-jp", "JP")
    dollars = refund("r-jp", "O2", "10.00", "USD", "acme-jp", "JP", version=2)
    await push(http, tenant, rate("fx", "2026-04-10", "0.05"), moved, yen)
    april = {"from": "2026-04-01", "to": "2026-04-30", "currency": "USD"}
    # Applied, with no rate for either on their day: no value.
    await settle(http, tenant, {"refunds": None}, **april)
    await push(http, tenant, moved_v2, dollars)
    await settle(http, tenant, {"refunds": 15.0}, **april)
    body = await kpis(http, tenant, metrics="refunds", grain="week", **april)
    assert body["warnings"] == []
    assert {period: value["refunds"] for period, _, value in values(body)} == {
        "2026-03-30": 10.0,
        "2026-04-06": 0.0,
        "2026-04-13": 0.0,
        "2026-04-20": 5.0,
        "2026-04-27": 0.0,
    }


async def test_of_two_rates_for_one_pair_and_date_the_one_pushed_last_wins(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant()
    window = {"from": "2026-02-02", "to": "2026-02-02", "currency": "USD"}
    first = [
        fx("fx-9", "2026-02-02", "USD", "MXN", "20"),
        line("m1", "M1", 1, "200.00", "2026-02-02T18:00:00Z", currency="MXN", marketplace="MX"),
    ]
    await push(http, tenant, *first)
    await settle(http, tenant, {"gmv": 10.0}, **window)
    # A correction under a new id that sorts before the first: it was pushed later.
    correction = [fx("fx-10", "2026-02-02", "USD", "MXN", "25")]
    await push(http, tenant, *correction)
    await settle(http, tenant, {"gmv": 8.0}, **window)
    # In one batch too (a CSV of rates with the correction in a later row): the later
    # event, whatever its id.
    in_one_batch = [
        fx("fx-zz", "2026-02-03", "USD", "MXN", "10"),
        fx("fx-aa", "2026-02-03", "USD", "MXN", "40"),
        line("m2", "M2", 1, "200.00", "2026-02-03T18:00:00Z", currency="MXN", marketplace="MX"),
    ]
    await push(http, tenant, *in_one_batch)
    await settle(http, tenant, {"gmv": 5.0}, **{**window, "from": "2026-02-03", "to": "2026-02-03"})


async def test_a_missing_rate_is_told_only_where_the_query_reads(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    """Narrowed to a category (as a user limited to it always is), an answer warns only
    of days its own amounts lack a rate: another category's pesos are none of its
    business, and its value is complete."""
    tenant = await new_tenant()
    lamp = line("c1", "C1", 1, "10.00", "2026-03-12T18:00:00Z", sku="LAMP")
    lamp["payload"]["category"] = "Lamps"
    secret = line(
        "c2", "C2", 1, "99.00", "2026-03-12T18:00:00Z",
        sku="BOX", currency="MXN", store="acme-mx", marketplace="MX",
    )  # fmt: skip
    secret["payload"]["category"] = "Secret"
    await push(http, tenant, lamp, secret)
    march = {"from": "2026-03-01", "to": "2026-03-31", "currency": "USD"}
    await settle(http, tenant, {"gmv": None}, **march)
    lamps = await kpis(http, tenant, metrics="gmv,fees", categories="Lamps", grain="total", **march)
    assert values(lamps) == [("TOTAL", [], {"gmv": 10.0, "fees": 0.0})]
    assert lamps["warnings"] == []
    boxes = await kpis(http, tenant, metrics="gmv", categories="Secret", grain="total", **march)
    assert boxes["warnings"] == ["no FX rate for MXN→USD on 2026-03-12"]
    # Every day without a rate is named.
    later = line(
        "c3", "C3", 1, "5.00", "2026-03-13T18:00:00Z",
        sku="BOX", currency="MXN", store="acme-mx", marketplace="MX",
    )  # fmt: skip
    later["payload"]["category"] = "Secret"
    await push(http, tenant, later)
    await settle(http, tenant, {"units": 3.0}, **march)
    two = await kpis(http, tenant, metrics="gmv", categories="Secret", grain="total", **march)
    assert two["warnings"] == ["no FX rate for MXN→USD on 2026-03-12, 2026-03-13"]


async def test_fees_netting_to_zero_need_no_rate_unless_each_is_a_value_of_its_own(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    """A fee and a credit in a currency with no rate cancel out in a total (no rate is
    needed), while by SKU each is a value of its own: null, and the answer says why."""
    tenant = await new_tenant()

    def fee(
        event_id: str, sku: str, amount: str, currency: str, store: str = SOURCE["store_id"]
    ) -> dict[str, Any]:
        money = {"amount": amount, "currency": currency}
        payload = {"fee_type": "other", "amount": money, "charged_at": "2026-10-05T20:00:00Z"}
        charged = event(event_id, "fee", {**payload, "sku": sku})
        return {**charged, "source": {**SOURCE, "store_id": store}}

    await push(
        http, tenant, fee("f1", "X", "2", "NOK"), fee("f2", "Y", "-2", "NOK"),
        fee("f3", "X", "3", "USD"),
        # A fee in one store and its credit in another, on one SKU: one group.
        fee("f4", "Z", "4", "NOK"), fee("f5", "Z", "-4", "NOK", store="other-store"),
    )  # fmt: skip
    day = {"from": "2026-10-05", "to": "2026-10-05", "currency": "USD"}
    await settle(http, tenant, {"fees": 3.0}, **day)
    for narrowed in ({}, {"skus": "X,Y"}):
        total = await kpis(http, tenant, metrics="fees", grain="total", **day, **narrowed)
        assert (values(total), total["warnings"]) == ([("TOTAL", [], {"fees": 3.0})], [])
    by_sku = await kpis(http, tenant, metrics="fees", grain="total", group_by="sku", **day)
    assert values(by_sku) == [
        ("TOTAL", ["X"], {"fees": None}),
        ("TOTAL", ["Y"], {"fees": None}),
        ("TOTAL", ["Z"], {"fees": 0.0}),
    ]
    assert by_sku["warnings"] == ["no FX rate for NOK→USD on 2026-10-05"]


async def test_a_comparison_names_a_currency_once_for_every_range_it_reads(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    """16 February to 31 March compared with the period before reads 16 to 28 January
    and all of February: one warning names the days of the asked and compared ranges,
    each day once, as one range's would."""
    tenant = await new_tenant()
    days = ["2026-01-20", "2026-02-10", "2026-02-20", "2026-03-20"]
    await push(
        http,
        tenant,
        *(
            line(
                f"p{n}",
                f"P{n}",
                1,
                "10.00",
                f"{day}T18:00:00Z",
                currency="MXN",
                store="acme-mx",
                marketplace="MX",
            )
            for n, day in enumerate(days)
        ),
    )
    await settle(
        http, tenant, {"units": 4.0}, **{"from": "2026-01-01", "to": "2026-03-31"}
    )  # fmt: skip
    compared = await kpis(
        http, tenant, metrics="gmv", grain="month", compare_to="previous_period", currency="USD",
        **{"from": "2026-02-16", "to": "2026-03-31"},
    )  # fmt: skip
    assert compared["warnings"] == [
        "no FX rate for MXN→USD on 2026-01-20, 2026-02-10, 2026-02-20, 2026-03-20"
    ]


async def test_a_missing_rate_is_told_only_of_the_metrics_asked(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    """GMV in dollars is complete however many reais were refunded: its answer warns
    of no rate; refunds' does."""
    tenant = await new_tenant()
    sold = line("m1", "M1", 1, "10.00", "2026-03-02T18:00:00Z", store="acme-mx", marketplace="MX")
    reais = refund("m-rf", "M1", "5.00", "BRL", "acme-mx", "MX")
    await push(http, tenant, sold, reais)
    march = {"from": "2026-03-01", "to": "2026-04-30", "currency": "USD"}
    await settle(http, tenant, {"gmv": 10.0, "refunds": None}, **march)
    for metrics in ("gmv", "fees", "gmv,fees,sessions"):
        body = await kpis(http, tenant, metrics=metrics, grain="total", **march)
        assert body["warnings"] == [], metrics
    refunds = await kpis(http, tenant, metrics="refunds", grain="total", **march)
    assert len(refunds["warnings"]) == 1 and "BRL→USD" in refunds["warnings"][0]


def cost(event_id: str, sku: str, amount: str, currency: str) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "type": "unit_cost",
        "source": {"platform": "erp", "store_id": "erp", "marketplace": "US"},
        "occurred_at": "2026-01-01T00:00:00Z",
        "payload": {
            "sku": sku,
            "cost": {"amount": amount, "currency": currency},
            "effective_from": "2026-01-01",
        },
    }


async def test_two_currencies_each_converted_with_its_own_rate_of_each_day(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    """Pesos and reais to dollars over three days, every day and currency at a rate of
    its own, and no real rate on the first day: each amount meets its own currency's
    factor of its own day, for sales and for costs alike."""
    tenant = await new_tenant()
    mx = {"currency": "MXN", "store": "acme-mx", "marketplace": "MX", "sku": "LAMP"}
    br = {"currency": "BRL", "store": "acme-br", "marketplace": "BR", "sku": "CUP"}
    events = [
        fx("mxn-1", "2026-02-01", "USD", "MXN", "25"),
        fx("mxn-2", "2026-02-02", "USD", "MXN", "20"),
        fx("mxn-3", "2026-02-03", "USD", "MXN", "16"),
        fx("brl-2", "2026-02-02", "USD", "BRL", "5"),
        fx("brl-3", "2026-02-03", "USD", "BRL", "4"),
        cost("lamp", "LAMP", "50.00", "MXN"),
        cost("cup", "CUP", "10.00", "BRL"),
        line("m1", "M1", 1, "500.00", "2026-02-01T18:00:00Z", **mx),
        line("m2", "M2", 1, "200.00", "2026-02-02T18:00:00Z", **mx),
        line("m3", "M3", 1, "80.00", "2026-02-03T18:00:00Z", **mx),
        line("b1", "B1", 1, "100.00", "2026-02-01T18:00:00Z", **br),
        line("b2", "B2", 1, "30.00", "2026-02-02T18:00:00Z", **br),
        line("b3", "B3", 1, "12.00", "2026-02-03T18:00:00Z", **br),
    ]
    response = await http.post("/v1/events", json={"events": events}, headers=tenant.headers)
    assert response.status_code == 202, response.text
    window = {"from": "2026-02-01", "to": "2026-02-03", "currency": "USD"}
    await settle(http, tenant, {"units": 6.0}, **window)

    body = await kpis(
        http, tenant, metrics="gmv,cogs", grain="day", group_by="marketplace", **window
    )
    assert values(body) == [
        ("2026-02-01", ["BR"], {"gmv": None, "cogs": None}),
        ("2026-02-01", ["MX"], {"gmv": 20.0, "cogs": 2.0}),
        ("2026-02-02", ["BR"], {"gmv": 6.0, "cogs": 2.0}),
        ("2026-02-02", ["MX"], {"gmv": 10.0, "cogs": 2.5}),
        ("2026-02-03", ["BR"], {"gmv": 3.0, "cogs": 2.5}),
        ("2026-02-03", ["MX"], {"gmv": 5.0, "cogs": 3.125}),
    ]
    assert body["warnings"] == ["no FX rate for BRL→USD on 2026-02-01"]


async def test_cogs_warns_of_its_costs_currency_not_its_lines(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    """COGS is priced in the unit costs' currency: a cost in pounds without a rate is
    named when dollar lines leave COGS null, and reais lines priced with a dollar cost
    need no rate for it."""
    tenant = await new_tenant()
    br = {"currency": "BRL", "store": "acme-br", "marketplace": "BR", "sku": "CUP"}
    events = [
        cost("lamp", "LAMP", "5.00", "GBP"),
        cost("cup", "CUP", "4.00", "USD"),
        line("u1", "U1", 1, "10.00", "2026-03-11T20:00:00Z", sku="LAMP"),
        line("u2", "U2", 1, "10.00", "2026-03-12T20:00:00Z", sku="LAMP"),
        line("b1", "B1", 2, "100.00", "2026-03-13T18:00:00Z", **br),
    ]
    await push(http, tenant, *events)
    march = {"from": "2026-03-01", "to": "2026-03-31", "currency": "USD"}
    await settle(http, tenant, {"units": 4.0}, **march)
    lamps = await kpis(
        http, tenant, metrics="cogs,gross_profit", skus="LAMP", grain="total", **march
    )
    assert values(lamps) == [("TOTAL", [], {"cogs": None, "gross_profit": None})]
    assert lamps["warnings"] == ["no FX rate for GBP→USD on 2026-03-11, 2026-03-12"]
    cups = await kpis(http, tenant, metrics="cogs,units", skus="CUP", grain="total", **march)
    assert values(cups) == [("TOTAL", [], {"cogs": 8.0, "units": 2.0})]
    assert cups["warnings"] == []
    # GMV reads the reais themselves: named once, beside the pounds of COGS.
    both = await kpis(http, tenant, metrics="gmv,cogs", grain="total", **march)
    assert both["warnings"] == [
        "no FX rate for BRL→USD on 2026-03-13",
        "no FX rate for GBP→USD on 2026-03-11, 2026-03-12",
    ]


async def test_a_currency_new_to_a_range_already_asked_about_is_converted(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    """The currencies of a range are kept per data version: pesos arriving in a month
    asked about in dollars alone are converted in the next answer, not left without a
    rate."""
    tenant = await new_tenant()
    march = {"from": "2026-03-01", "to": "2026-03-31", "currency": "USD"}
    await push(http, tenant, line("u1", "U1", 1, "7.00", "2026-03-10T18:00:00Z"))
    await settle(http, tenant, {"gmv": 7.0}, **march)
    await push(
        http,
        tenant,
        fx("fx-mar", "2026-03-01", "USD", "MXN", "20"),
        line("p1", "P1", 1, "100.00", "2026-03-10T18:00:00Z", currency="MXN", marketplace="MX"),
    )
    await settle(http, tenant, {"gmv": 12.0, "orders": 2.0}, **march)
    body = await kpis(http, tenant, metrics="gmv", grain="total", **march)
    assert body["warnings"] == []


def test_a_missing_rate_warning_names_a_month_of_days_then_counts_the_rest() -> None:
    days = [date(2026, 1, 1) + timedelta(days=n) for n in range(MAX_DAYS_NAMED + 2)]
    month = missing_rate_warning("MXN", "USD", days[:MAX_DAYS_NAMED])
    assert month.startswith("no FX rate for MXN→USD on 2026-01-01, 2026-01-02, ")
    assert month.endswith(", 2026-01-31")
    one_more = missing_rate_warning("MXN", "USD", days[: MAX_DAYS_NAMED + 1])
    assert one_more.endswith(", 2026-01-31 and 1 more day, the last 2026-02-01")
    two_more = missing_rate_warning("MXN", "USD", days)
    assert two_more.endswith(", 2026-01-31 and 2 more days, the last 2026-02-02")


def test_a_base_is_as_fresh_as_its_older_leg_and_ties_go_by_name() -> None:
    d0, d1, d2 = date(2025, 1, 6), date(2025, 6, 2), date(2026, 1, 5)
    book = RateBook.from_rows(
        [
            # Through USD one leg is of the very day, but the other is older than EUR's.
            (d2, "USD", "MXN", D("18")),
            (d0, "USD", "BRL", D("4")),
            (d1, "EUR", "MXN", D("20")),
            (d1, "EUR", "BRL", D("5")),
            # Through GBP, legs as fresh as EUR's: EUR comes first by name.
            (d1, "GBP", "MXN", D("25")),
            (d1, "GBP", "BRL", D("7")),
        ]
    )
    assert book.factor("BRL", "MXN", d2) == D("20") / D("5")


async def test_an_amount_that_converts_to_zero_needs_no_rate(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    """A free line (its discount its price), a tax GMV does not read, a unit cost of
    zero: each is zero in any currency, so no rate is missing and nothing is null."""
    tenant = await new_tenant()
    de = {"currency": "EUR", "store": "acme-de", "marketplace": "DE"}
    events = [
        line("z1", "Z1", 1, "10.00", "2026-03-02T10:00:00Z", sku="FREE", discount="10.00", **de),
        line("z2", "Z2", 1, "0.00", "2026-03-03T10:00:00Z", sku="TAXED", tax="1.90", **de),
        cost("zero", "GIFT", "0", "GBP"),
        line("z3", "Z3", 1, "10.00", "2026-03-05T20:00:00Z", sku="GIFT"),
    ]
    await push(http, tenant, *events)
    march = {"from": "2026-03-01", "to": "2026-03-31", "currency": "USD"}
    await settle(http, tenant, {"units": 3.0}, **march)
    for group_by in ({}, {"group_by": "sku"}, {"group_by": "marketplace"}):
        body = await kpis(http, tenant, metrics="gmv", grain="day", **march, **group_by)
        assert body["warnings"] == [], group_by
        assert {v["value"] for r in body["rows"] for v in r["values"]} == {0.0, 10.0}, group_by
    gift = await kpis(http, tenant, metrics="cogs", skus="GIFT", grain="total", **march)
    assert (values(gift), gift["warnings"]) == ([("TOTAL", [], {"cogs": 0.0})], [])
    # Read when GMV includes tax: the euros of tax then need their rate.
    assert (
        await http.put("/v1/settings/kpi", json={"gmv_includes_tax": True}, headers=tenant.headers)
    ).status_code == 200
    taxed = await kpis(http, tenant, metrics="gmv", grain="total", **march)
    assert taxed["warnings"] == ["no FX rate for EUR→USD on 2026-03-03"]


async def test_gmv_without_shipping_of_a_free_line_needs_no_rate(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    """GMV without shipping was GMV minus shipping, each converted: the shipping of a
    free line needed a rate though the GMV asked for was zero."""
    tenant = await new_tenant()
    de = {"currency": "EUR", "store": "acme-de", "marketplace": "DE"}
    await push(
        http,
        tenant,
        line("s1", "S1", 1, "0.00", "2026-03-04T10:00:00Z", sku="FREE", shipping="4.00", **de),
        line("s2", "S2", 1, "10.00", "2026-03-04T10:00:00Z", sku="PAID"),
    )
    march = {"from": "2026-03-01", "to": "2026-03-31", "currency": "USD"}
    await settle(http, tenant, {"units": 2.0}, **march)
    with_shipping = await kpis(http, tenant, metrics="gmv", grain="total", **march)
    assert values(with_shipping) == [("TOTAL", [], {"gmv": None})]
    assert with_shipping["warnings"] == ["no FX rate for EUR→USD on 2026-03-04"]
    settings = {"gmv_includes_shipping": False, "gmv_includes_tax": True}
    assert (
        await http.put("/v1/settings/kpi", json=settings, headers=tenant.headers)
    ).status_code == 200
    for group_by in ({}, {"group_by": "sku"}):
        body = await kpis(http, tenant, metrics="gmv", grain="total", **march, **group_by)
        assert body["warnings"] == [], group_by
        assert {v["value"] for r in body["rows"] for v in r["values"]} <= {0.0, 10.0}, body


async def test_a_refund_of_the_whole_sale_nets_to_zero_through_a_rate_of_many_digits(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    """USD→MXN 17.50 converts MXN at 1/17.5, a factor of 28 digits: a converted amount
    carries more than Decimal's default 28, and a GMV less its whole refund left
    -3.37e-27, over which the margins were 1e27 (and the next day's change 1.0)."""
    tenant = await new_tenant()
    fx = event(
        "fx", "fx_rate", {"date": "2026-04-01", "base": "USD", "quote": "MXN", "rate": "17.50"}
    )
    sale = line(
        "l1", "O1", 1, "179.50", "2026-04-02T18:00:00Z",
        currency="MXN", store="acme-mx", marketplace="MX",
    )  # fmt: skip
    await push(http, tenant, fx, sale, refund("r1", "O1", "179.50", "MXN", "acme-mx", "MX"))
    days = {"from": "2026-04-02", "to": "2026-04-03", "currency": "USD"}
    await settle(http, tenant, {"refunds": 179.5 / 17.5}, **days)
    for currency in ("USD", "MXN"):
        body = await kpis(
            http, tenant, metrics="net_sales,gross_margin,net_margin", grain="day",
            compare_to="previous_period", **{**days, "currency": currency},
        )  # fmt: skip
        by_day = {row["period"]: {v["metric"]: v for v in row["values"]} for row in body["rows"]}
        sold = by_day["2026-04-02"]
        assert sold["net_sales"]["value"] == 0.0, (currency, sold)
        assert sold["gross_margin"]["value"] is None and sold["net_margin"]["value"] is None
        after = by_day["2026-04-03"]["net_sales"]
        assert (after["previous"], after["change"]) == (0.0, None), (currency, after)
