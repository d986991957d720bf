"""Every additive KPI of CONTRACT §4 in one hand-computed month."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from services.metrics.kpis import service
from tests.conftest import NewTenant, TenantClient
from tests.metrics.test_kpis import kpis, line

SOURCE = {"platform": "amazon", "store_id": "acme-us", "marketplace": "US"}


def event(event_id: str, kind: str, payload: dict[str, Any], version: int = 1) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "type": kind,
        "version": version,
        "source": SOURCE,
        "occurred_at": "2026-04-01T00:00:00Z",
        "payload": payload,
    }


def usd(amount: str) -> dict[str, str]:
    return {"amount": amount, "currency": "USD"}


async def wait_for(
    http: httpx.AsyncClient, tenant: TenantClient, metric: str, expected: float
) -> dict[str, Any]:
    body: dict[str, Any] = {}
    for _ in range(150):
        body = await kpis(
            http,
            tenant,
            metrics=metric,
            grain="total",
            **{"from": "2026-04-01", "to": "2026-04-30"},
        )
        if body["rows"][0]["values"][0]["value"] == expected:
            return body
        await asyncio.sleep(0.2)
    raise AssertionError(f"{metric} never became {expected}: {body}")


async def test_profit_ads_traffic_and_service_kpis(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant()
    events = [
        # Sales: 2 x 50 + 3 x 20 = 160 GMV, 5 units, 2 orders; one more order cancelled.
        line("l1", "O1", 2, "50.00", "2026-04-10T18:00:00Z", sku="LAMP"),
        line("l2", "O2", 3, "20.00", "2026-04-12T18:00:00Z", sku="MUG"),
        line("l3", "O3", 1, "99.00", "2026-04-13T18:00:00Z", sku="MUG", status="cancelled"),
        # Unit costs: LAMP 10 until the 11th, 12 from then on; MUG 5. COGS = 2 x 10 + 3 x 5 = 35.
        event(
            "c1", "unit_cost", {"sku": "LAMP", "cost": usd("10.00"), "effective_from": "2026-01-01"}
        ),
        event(
            "c2", "unit_cost", {"sku": "LAMP", "cost": usd("12.00"), "effective_from": "2026-04-11"}
        ),
        event(
            "c3", "unit_cost", {"sku": "MUG", "cost": usd("5.00"), "effective_from": "2026-01-01"}
        ),
        # A refund of 16 (later corrected from 30 by a higher version) and fees of 24.
        event(
            "r1",
            "refund",
            {
                "order_id": "O1",
                "sku": "LAMP",
                "amount": usd("30.00"),
                "refunded_at": "2026-04-20T18:00:00Z",
            },
        ),
        event(
            "f1",
            "fee",
            {
                "fee_type": "commission",
                "amount": usd("16.00"),
                "charged_at": "2026-04-10T18:00:00Z",
            },
        ),
        event(
            "f2",
            "fee",
            {
                "fee_type": "fulfillment",
                "amount": usd("8.00"),
                "charged_at": "2026-04-12T18:00:00Z",
            },
        ),
        # Ads: 1000 impressions, 40 clicks, cost 20, attributed sales 80 and 4 orders.
        event(
            "a1",
            "ad_spend",
            {
                "date": "2026-04-10",
                "campaign_id": "c",
                "sku": "LAMP",
                "impressions": 600,
                "clicks": 30,
                "cost": usd("15.00"),
                "attributed_sales": usd("60.00"),
                "attributed_orders": 3,
            },
        ),
        event(
            "a2",
            "ad_spend",
            {
                "date": "2026-04-11",
                "campaign_id": "c",
                "sku": "LAMP",
                "impressions": 400,
                "clicks": 10,
                "cost": usd("5.00"),
                "attributed_sales": usd("20.00"),
                "attributed_orders": 1,
            },
        ),
        # Traffic: 100 sessions.
        event(
            "t1", "traffic", {"date": "2026-04-10", "sku": "LAMP", "sessions": 60, "page_views": 90}
        ),
        event("t2", "traffic", {"date": "2026-04-12", "sku": "MUG", "sessions": 40}),
        # Tickets: first responses after 2 h and 4 h; csat 5 and 3.
        event(
            "k1",
            "cs_ticket",
            {
                "ticket_id": "1",
                "opened_at": "2026-04-10T10:00:00Z",
                "first_response_at": "2026-04-10T12:00:00Z",
                "csat": 5,
            },
        ),
        event(
            "k2",
            "cs_ticket",
            {
                "ticket_id": "2",
                "opened_at": "2026-04-11T10:00:00Z",
                "first_response_at": "2026-04-11T14:00:00Z",
                "csat": 3,
            },
        ),
    ]
    response = await http.post("/v1/events", json={"events": events}, headers=tenant.headers)
    assert response.status_code == 202, response.text
    correction = event(
        "r1",
        "refund",
        {
            "order_id": "O1",
            "sku": "LAMP",
            "amount": usd("16.00"),
            "refunded_at": "2026-04-20T18:00:00Z",
        },
        version=2,
    )
    await wait_for(http, tenant, "refunds", 30.0)
    assert (
        await http.post("/v1/events", json={"events": [correction]}, headers=tenant.headers)
    ).status_code == 202
    await wait_for(http, tenant, "refunds", 16.0)
    await wait_for(http, tenant, "csat", 4.0)
    await wait_for(http, tenant, "sessions", 100.0)

    metrics = [
        "gmv", "orders", "units", "refunds", "refund_rate", "net_sales", "cancel_rate", "fees",
        "cogs", "gross_profit", "gross_margin", "ad_spend", "ad_sales", "impressions", "clicks",
        "ad_orders", "net_profit", "net_margin", "acos", "tacos", "roas", "ctr", "cpc", "ad_cvr",
        "sessions", "cvr", "first_response_hours", "csat",
    ]  # fmt: skip
    body = await kpis(
        http,
        tenant,
        metrics=",".join(metrics),
        grain="total",
        **{"from": "2026-04-01", "to": "2026-04-30"},
    )
    got = {v["metric"]: v["value"] for v in body["rows"][0]["values"]}
    net_sales = 160 - 16
    gross_profit = net_sales - 35 - 24
    expected = {
        "gmv": 160.0, "orders": 2.0, "units": 5.0, "refunds": 16.0, "refund_rate": 16 / 160,
        "net_sales": 144.0, "cancel_rate": 1 / 3, "fees": 24.0, "cogs": 35.0,
        "gross_profit": 85.0, "gross_margin": gross_profit / net_sales, "ad_spend": 20.0,
        "ad_sales": 80.0, "impressions": 1000.0, "clicks": 40.0, "ad_orders": 4.0,
        "net_profit": 65.0, "net_margin": 65 / 144, "acos": 0.25, "tacos": 20 / 160, "roas": 4.0,
        "ctr": 0.04, "cpc": 0.5, "ad_cvr": 0.1, "sessions": 100.0, "cvr": 0.02,
        "first_response_hours": 3.0, "csat": 4.0,
    }  # fmt: skip
    assert set(got) == set(expected)
    for metric, value in expected.items():
        assert abs(got[metric] - value) <= 1e-9 * max(1.0, abs(value)), (metric, got[metric], value)
    assert body["warnings"] == []

    # By SKU: COGS of LAMP uses the cost in effect on its purchase day (the 10th: 10).
    by_sku = await kpis(
        http,
        tenant,
        metrics="gmv,cogs,ad_spend",
        grain="total",
        group_by="sku",
        **{"from": "2026-04-01", "to": "2026-04-30"},
    )
    rows = {
        r["dimensions"][0]["value"]: {v["metric"]: v["value"] for v in r["values"]}
        for r in by_sku["rows"]
    }
    assert rows["LAMP"] == {"gmv": 100.0, "cogs": 20.0, "ad_spend": 20.0}
    assert rows["MUG"] == {"gmv": 60.0, "cogs": 15.0, "ad_spend": 0.0}


async def test_cogs_without_a_unit_cost_is_null_with_a_warning(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant()
    events = [line("n1", "N1", 1, "10.00", "2026-04-10T18:00:00Z", sku="NEW-SKU")]
    assert (
        await http.post("/v1/events", json={"events": events}, headers=tenant.headers)
    ).status_code == 202
    await wait_for(http, tenant, "gmv", 10.0)
    body = await kpis(
        http,
        tenant,
        metrics="cogs,gross_profit",
        grain="total",
        **{"from": "2026-04-01", "to": "2026-04-30"},
    )
    assert [v["value"] for v in body["rows"][0]["values"]] == [None, None]
    assert body["warnings"] == ["no unit cost for SKU NEW-SKU"]
    # A cost from a later day leaves the earlier lines without one: the warning says
    # from when the SKU has one.
    cost = event(
        "uc-later",
        "unit_cost",
        {"sku": "NEW-SKU", "cost": usd("4.00"), "effective_from": "2026-04-20"},
    )
    later = [line("n2", "N2", 1, "10.00", "2026-04-21T18:00:00Z", sku="NEW-SKU")]
    for pushed in ([cost], later):
        assert (
            await http.post("/v1/events", json={"events": pushed}, headers=tenant.headers)
        ).status_code == 202
    await wait_for(http, tenant, "gmv", 20.0)
    april = {"from": "2026-04-01", "to": "2026-04-30"}
    body = await kpis(http, tenant, metrics="cogs", grain="total", **april)
    assert body["rows"][0]["values"][0]["value"] is None
    assert body["warnings"] == ["no unit cost for SKU NEW-SKU before 2026-04-20"]
    since = await kpis(
        http, tenant, metrics="cogs", grain="total", **{**april, "from": "2026-04-20"}
    )
    assert (since["rows"][0]["values"][0]["value"], since["warnings"]) == (4.0, [])


async def test_a_store_takes_its_own_unit_cost_before_the_tenants_newest(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant()

    def cost(event_id: str, store: str, amount: str, since: str) -> dict[str, Any]:
        costed = event(
            event_id, "unit_cost", {"sku": "LAMP", "cost": usd(amount), "effective_from": since}
        )
        costed["source"] = {**SOURCE, "store_id": store}
        return costed

    events = [
        line("a1", "A1", 1, "50.00", "2026-04-10T18:00:00Z", sku="LAMP", store="store-a"),
        line("b1", "B1", 1, "50.00", "2026-04-10T18:00:00Z", sku="LAMP", store="store-b"),
        line("c1", "C1", 1, "50.00", "2026-04-10T18:00:00Z", sku="LAMP", store="store-c"),
        cost("ca", "store-a", "3.00", "2026-01-01"),
        # Newer, but store B's own: store A keeps its 3.00.
        cost("cb", "store-b", "15.00", "2026-03-01"),
        # From the ERP, no selling store, and the newest: for store C, which has none.
        cost("ce", "erp", "7.00", "2026-03-15"),
    ]

    async def pushed(costed: list[dict[str, Any]], cogs: float) -> None:
        answer = await http.post("/v1/events", json={"events": costed}, headers=tenant.headers)
        assert answer.status_code == 202, answer.text
        await wait_for(http, tenant, "cogs", cogs)

    await pushed(events, 25.0)
    body = await kpis(
        http, tenant, metrics="cogs", grain="total", group_by="store",
        **{"from": "2026-04-01", "to": "2026-04-30"},
    )  # fmt: skip
    by_store = {r["dimensions"][0]["value"]: r["values"][0]["value"] for r in body["rows"]}
    assert by_store == {"store-a": 3.0, "store-b": 15.0, "store-c": 7.0}
    # Of two costs from one day, the one pushed last, whatever its id: in one batch
    # (a later row of an ERP's file) and in a later push, as FX rates.
    corrections = [
        cost("zz", "store-a", "4.00", "2026-01-01"),
        cost("aa", "store-a", "5.00", "2026-01-01"),
    ]
    await pushed(corrections, 27.0)
    await pushed([cost("a", "store-a", "6.00", "2026-01-01")], 28.0)
    # A store is its store id, whatever platform pushed its cost: an ERP pushing each
    # store's landed cost as itself prices that store, not every store with its newest.
    from_erp = cost("erp-b", "store-b", "9.00", "2026-03-02")
    from_erp["source"] = {**from_erp["source"], "platform": "erp"}
    await pushed([from_erp], 22.0)


async def test_a_question_narrowed_to_stores_takes_categories_from_their_lines(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant()
    mx = {"platform": "amazon", "store_id": "acme-mx", "marketplace": "MX"}
    secret_line = {
        **line("l-mx", "O-MX", 1, "10.00", "2026-04-10T18:00:00Z", sku="LAMP"),
        "source": mx,
    }
    secret_line["payload"]["category"] = "mx-only-name"
    ads = event(
        "a-us", "ad_spend",
        {"date": "2026-04-10", "campaign_id": "c", "sku": "LAMP", "impressions": 10,
         "clicks": 1, "cost": usd("4.00"), "attributed_sales": usd("0.00"),
         "attributed_orders": 0},
    )  # fmt: skip
    pushed = await http.post(
        "/v1/events", json={"events": [secret_line, ads]}, headers=tenant.headers
    )
    assert pushed.status_code == 202, pushed.text
    await wait_for(http, tenant, "ad_spend", 4.0)
    await wait_for(http, tenant, "gmv", 10.0)
    window = {"from": "2026-04-01", "to": "2026-04-30", "grain": "total", "group_by": "category"}

    async def by_category(**narrowed: str) -> dict[str, Any]:
        body = await kpis(http, tenant, metrics="ad_spend", **window, **narrowed)
        return {r["dimensions"][0]["value"]: r["values"][0]["value"] for r in body["rows"]}

    # The whole tenant: a SKU's category is what its newest line names, in any store.
    assert await by_category() == {"mx-only-name": 4.0}
    # Narrowed to the US store (as an agency granted only it always is): the US store
    # has no line naming one, so the MX line's name does not show.
    assert await by_category(stores="acme-us") == {"": 4.0}
    assert await by_category(marketplaces="US") == {"": 4.0}
    assert await by_category(stores="acme-us", categories="mx-only-name") == {}
    # Narrowed to both stores, the MX line names the US ad's SKU, as without a filter.
    assert await by_category(stores="acme-us,acme-mx") == {"mx-only-name": 4.0}
    assert await by_category(marketplaces="US,MX", platforms="amazon") == {"mx-only-name": 4.0}
    assert await by_category(platforms="walmart,amazon") == {"mx-only-name": 4.0}
    assert await by_category(platforms="walmart") == {}


async def test_a_group_every_fee_ad_and_visit_left_has_no_row(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant()
    moved_to = {"platform": "amazon", "store_id": "acme-us-2", "marketplace": "US"}
    fee = event(
        "f", "fee",
        {"fee_type": "commission", "amount": usd("3.00"), "charged_at": "2026-04-10T18:00:00Z",
         "sku": "LAMP"},
    )  # fmt: skip
    ads = event(
        "a", "ad_spend",
        {"date": "2026-04-10", "campaign_id": "c", "sku": "LAMP", "impressions": 10,
         "clicks": 1, "cost": usd("4.00"), "attributed_sales": usd("0.00"),
         "attributed_orders": 0},
    )  # fmt: skip
    visits = event("t", "traffic", {"date": "2026-04-10", "sku": "LAMP", "sessions": 5})
    first = [fee, ads, visits]
    assert (
        await http.post("/v1/events", json={"events": first}, headers=tenant.headers)
    ).status_code == 202
    await wait_for(http, tenant, "sessions", 5.0)
    # New versions move all three to another store.
    moved = [{**e, "source": moved_to, "version": 2} for e in (fee, ads, visits)]
    moved[2]["payload"] = {**visits["payload"], "sessions": 6}
    assert (
        await http.post("/v1/events", json={"events": moved}, headers=tenant.headers)
    ).status_code == 202
    await wait_for(http, tenant, "sessions", 6.0)
    for group_by in ("store", "sku", "store,sku"):
        body = await kpis(
            http, tenant, metrics="fees,ad_spend,sessions", grain="total", group_by=group_by,
            **{"from": "2026-04-01", "to": "2026-04-30"},
        )  # fmt: skip
        rows = {
            tuple(d["value"] for d in r["dimensions"]): {
                v["metric"]: v["value"] for v in r["values"]
            }
            for r in body["rows"]
        }
        expected = {
            "store": {("acme-us-2",): (3.0, 4.0, 6.0)},
            "sku": {("LAMP",): (3.0, 4.0, 6.0)},
            "store,sku": {("acme-us-2", "LAMP"): (3.0, 4.0, 6.0)},
        }[group_by]  # fmt: skip
        assert {
            key: (v["fees"], v["ad_spend"], v["sessions"]) for key, v in rows.items()
        } == expected, group_by


async def test_facts_of_zero_keep_their_row_until_they_leave(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant()

    def fee(event_id: str, sku: str, amount: str, day: str = "10", version: int = 1) -> Any:
        charged = f"2026-04-{day}T18:00:00Z"
        payload = {"fee_type": "other", "amount": usd(amount), "charged_at": charged, "sku": sku}
        return event(event_id, "fee", payload, version)

    # In one push, so in one batch: fees netting to zero, a fee of zero, no visits, an
    # ad that brought no order, and a fee of 5 to know the batch has been applied.
    pushed = [
        fee("plus", "NETTED", "2.00"),
        fee("minus", "NETTED", "-2.00"),
        fee("waived", "WAIVED", "0.00"),
        fee("marker", "MARKER", "5.00"),
        event("visits", "traffic", {"date": "2026-04-10", "sku": "QUIET", "sessions": 0}),
        event(
            "ad", "ad_spend",
            {"date": "2026-04-10", "campaign_id": "c", "sku": "ADVERT", "impressions": 10,
             "clicks": 1, "cost": usd("1.50"), "attributed_sales": usd("0.00"),
             "attributed_orders": 0},
        ),
    ]  # fmt: skip
    response = await http.post("/v1/events", json={"events": pushed}, headers=tenant.headers)
    assert response.status_code == 202, response.text
    await wait_for(http, tenant, "fees", 5.0)

    async def by_day_and_sku(metric: str) -> dict[tuple[str, str], Any]:
        body = await kpis(
            http, tenant, metrics=metric, grain="day", group_by="sku",
            **{"from": "2026-04-01", "to": "2026-04-30"},
        )  # fmt: skip
        return {
            (r["period"], r["dimensions"][0]["value"]): r["values"][0]["value"]
            for r in body["rows"]
        }

    assert await by_day_and_sku("fees") == {
        ("2026-04-10", "MARKER"): 5.0,
        ("2026-04-10", "NETTED"): 0.0,
        ("2026-04-10", "WAIVED"): 0.0,
    }
    assert await by_day_and_sku("sessions") == {("2026-04-10", "QUIET"): 0.0}
    assert await by_day_and_sku("ad_orders") == {("2026-04-10", "ADVERT"): 0.0}
    # The netted fees move to the 11th one by one: the 10th keeps NETTED's row while
    # one of them is there, then has none; the 11th holds them, netting to zero again.
    # The marker's new amount tells each move has been applied.
    for version, moved in (
        (2, fee("plus", "NETTED", "2.00", "11", 2)),
        (3, fee("minus", "NETTED", "-2.00", "11", 2)),
    ):
        marker = fee("marker", "MARKER", f"{version}.00", version=version)
        response = await http.post(
            "/v1/events", json={"events": [moved, marker]}, headers=tenant.headers
        )
        assert response.status_code == 202, response.text
        await wait_for(http, tenant, "fees", float(version))
        if version == 2:
            assert (await by_day_and_sku("fees"))[("2026-04-10", "NETTED")] == -2.0
    assert await by_day_and_sku("fees") == {
        ("2026-04-10", "MARKER"): 3.0,
        ("2026-04-10", "WAIVED"): 0.0,
        ("2026-04-11", "NETTED"): 0.0,
    }


async def test_many_skus_without_a_unit_cost_are_named_up_to_a_bound_then_counted(
    http: httpx.AsyncClient, new_tenant: NewTenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    """20,000 SKUs sold without a cost wrote 20,000 warnings into every answer."""
    monkeypatch.setattr(service, "MAX_SKUS_NAMED", 2)
    tenant = await new_tenant()
    events = [
        line(f"m{n}", f"M{n}", 1, "10.00", "2026-04-10T18:00:00Z", sku=f"SKU-{n}") for n in range(5)
    ]
    assert (
        await http.post("/v1/events", json={"events": events}, headers=tenant.headers)
    ).status_code == 202
    await wait_for(http, tenant, "gmv", 50.0)
    body = await kpis(
        http, tenant, metrics="cogs", grain="total", **{"from": "2026-04-01", "to": "2026-04-30"}
    )
    assert body["warnings"] == [
        "no unit cost for SKU SKU-0",
        "no unit cost for SKU SKU-1",
        "no unit cost for 3 more SKUs",
    ]
