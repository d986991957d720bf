"""Measures dated by their order's purchase date: pre-fulfillment cancellations, order
defects, and refunds when the tenant counts them so, including events that arrive
before their order and orders whose date moves."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from tests.conftest import NewTenant, TenantClient
from tests.metrics.test_kpis import kpis, line
from tests.metrics.test_profit_and_ads import event

APRIL_WINDOW = {"from": "2026-04-01", "to": "2026-04-15"}


async def push(http: httpx.AsyncClient, tenant: TenantClient, *events: dict[str, Any]) -> None:
    response = await http.post("/v1/events", json={"events": list(events)}, headers=tenant.headers)
    assert response.status_code == 202, response.text


async def totals(
    http: httpx.AsyncClient, tenant: TenantClient, metrics: str, **window: str
) -> dict[str, Any]:
    body = await kpis(http, tenant, metrics=metrics, grain="total", **(window or APRIL_WINDOW))
    return {v["metric"]: v["value"] for v in body["rows"][0]["values"]}


async def settle(
    http: httpx.AsyncClient, tenant: TenantClient, want: dict[str, Any], **window: str
) -> None:
    got: dict[str, Any] = {}
    for _ in range(150):
        got = await totals(http, tenant, ",".join(want), **window)
        if all(
            (got[k] is None and v is None)
            or (got[k] is not None and v is not None and abs(got[k] - v) < 1e-9)
            for k, v in want.items()
        ):
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"wanted {want}, got {got}")


def shipment(event_id: str, order_id: str, cancelled: bool) -> dict[str, Any]:
    return event(
        event_id,
        "shipment",
        {
            "order_id": order_id,
            "promised_ship_by": "2026-04-14T18:00:00Z",
            "cancelled_by_seller_before_ship": cancelled,
        },
    )


def defect(event_id: str, order_id: str, kind: str = "negative_feedback") -> dict[str, Any]:
    return event(
        event_id,
        "order_defect",
        {"order_id": order_id, "kind": kind, "reported_at": "2026-04-15T10:00:00Z"},
    )


async def test_cancel_and_defect_rates_by_purchase_date_with_windows(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant()
    await push(
        http,
        tenant,
        line("l1", "O1", 1, "10.00", "2026-04-10T18:00:00Z"),
        line("l2", "O2", 1, "10.00", "2026-04-12T18:00:00Z"),
        line("l3", "O3", 1, "10.00", "2026-04-13T18:00:00Z", status="cancelled"),
        line("l4", "O4", 1, "10.00", "2026-04-14T18:00:00Z"),
        # Outside both windows ending on 15 April (7 and 60 days).
        line("l5", "O5", 1, "10.00", "2026-01-20T18:00:00Z"),
        shipment("s2", "O2", cancelled=False),
        shipment("s3", "O3", cancelled=True),
        # Two defects of one order count it once.
        defect("d1", "O1"),
        defect("d1b", "O1", "a_to_z_claim"),
        defect("d5", "O5"),
        # A defect of an order not seen yet waits for it.
        defect("d9", "O9", "chargeback"),
    )
    # 7 days to 15 April: O1, O2, O3 (cancelled, still placed), O4; the seller cancelled O3.
    # 60 days: the same four (O5 is older); O1 has defects.
    await settle(http, tenant, {"pre_fulfillment_cancel_rate": 0.25, "order_defect_rate": 0.25})
    await push(http, tenant, line("l9", "O9", 1, "10.00", "2026-04-11T18:00:00Z"))
    await settle(http, tenant, {"pre_fulfillment_cancel_rate": 0.2, "order_defect_rate": 0.4})
    # The cancellation was corrected: the seller did not cancel O3 after all.
    corrected = shipment("s3", "O3", cancelled=False)
    corrected["version"] = 2
    await push(http, tenant, corrected)
    await settle(http, tenant, {"pre_fulfillment_cancel_rate": 0.0, "order_defect_rate": 0.4})
    # An earlier line moves O9 to 1 February: out of both windows, and its defect with it.
    await push(http, tenant, line("l9a", "O9", 1, "10.00", "2026-02-01T18:00:00Z"))
    await settle(http, tenant, {"pre_fulfillment_cancel_rate": 0.0, "order_defect_rate": 0.25})
    # By month: each month's rates over the window ending on its last day.
    body = await kpis(
        http,
        tenant,
        metrics="order_defect_rate",
        grain="month",
        **{"from": "2026-01-01", "to": "2026-02-28"},
    )
    by_month = {row["period"]: row["values"][0]["value"] for row in body["rows"]}
    # January: O5 (defective) of 1; February: O5 (20 Jan) and O9 (1 Feb), both defective.
    assert by_month == {"2026-01-01": 1.0, "2026-02-01": 1.0}
    # Defects have no SKU: by SKU the rate is null, saying so.
    by_sku = await kpis(
        http, tenant, metrics="order_defect_rate", grain="total", group_by="sku", **APRIL_WINDOW
    )
    assert by_sku["warnings"] == ["order_defect_rate is not available by sku: its values are null"]
    assert all(row["values"][0]["value"] is None for row in by_sku["rows"])


def mx_line(event_id: str, order_id: str, amount: str, purchased_at: str) -> dict[str, Any]:
    return line(
        event_id,
        order_id,
        1,
        amount,
        purchased_at,
        currency="MXN",
        store="acme-mx",
        marketplace="MX",
    )


def refund(
    event_id: str,
    order_id: str,
    amount: str,
    currency: str,
    store: str,
    marketplace: str,
    version: int = 1,
) -> dict[str, Any]:
    body = event(
        event_id,
        "refund",
        {
            "order_id": order_id,
            "amount": {"amount": amount, "currency": currency},
            "refunded_at": "2026-04-02T18:00:00Z",
        },
        version=version,
    )
    body["source"] = {"platform": "amazon", "store_id": store, "marketplace": marketplace}
    return body


def rate(event_id: str, day: str, value: str) -> dict[str, Any]:
    return event(event_id, "fx_rate", {"date": day, "base": "MXN", "quote": "USD", "rate": value})


async def test_refunds_move_to_the_purchase_date_when_the_tenant_says_so(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant()
    march = {"from": "2026-03-01", "to": "2026-03-31", "currency": "USD"}
    april = {"from": "2026-04-01", "to": "2026-04-30", "currency": "USD"}
    await push(
        http,
        tenant,
        rate("fx1", "2026-03-30", "0.05"),
        rate("fx2", "2026-04-01", "0.06"),
        line("r1", "R1", 1, "100.00", "2026-03-30T18:00:00Z"),
        mx_line("r2", "R2", "1000.00", "2026-03-30T18:00:00Z"),
        refund("f1", "R1", "30.00", "USD", "acme-us", "US"),
        refund("f2", "R2", "200.00", "MXN", "acme-mx", "MX"),
        # The refund of an order whose lines have not arrived yet.
        refund("f3", "LATE", "5.00", "USD", "acme-us", "US"),
    )
    # By refunded_at (the default): all in April, MXN at 2 April's rate (0.06 from 1 April).
    await settle(http, tenant, {"refunds": 30 + 200 * 0.06 + 5}, **april)
    assert (await totals(http, tenant, "refunds", **march))["refunds"] == 0
    put = await http.put(
        "/v1/settings/kpi", json={"refunds_by": "purchase_date"}, headers=tenant.headers
    )
    assert put.status_code == 200 and put.json()["refunds_by"] == "purchase_date"
    # History moves with the setting: March now, at 30 March's rate. LATE's order has no
    # date yet, so its refund stays on its refunded_at day rather than counting nowhere.
    await settle(http, tenant, {"refunds": 30 + 200 * 0.05}, **march)
    assert (await totals(http, tenant, "refunds", **april))["refunds"] == 5
    catalog = await http.get("/v1/kpis/catalog", headers=tenant.headers)
    refunds = next(k for k in catalog.json()["kpis"] if k["id"] == "refunds")
    assert "purchase date" in refunds["description"]
    # LATE's line arrives (purchased 28 March): its refund joins March; a new version of
    # f1 replaces the old amount.
    await push(
        http,
        tenant,
        line("late1", "LATE", 1, "9.00", "2026-03-28T18:00:00Z"),
        refund("f1", "R1", "35.00", "USD", "acme-us", "US", version=2),
    )
    await settle(http, tenant, {"refunds": 35 + 200 * 0.05 + 5}, **march)
    assert (await totals(http, tenant, "refunds", **april))["refunds"] == 0
    net = await totals(http, tenant, "net_sales,refund_rate", **march)
    assert abs(net["net_sales"] - (100 + 1000 * 0.05 + 9 - 50)) < 1e-9
    back = await http.put(
        "/v1/settings/kpi", json={"refunds_by": "refunded_at"}, headers=tenant.headers
    )
    assert back.status_code == 200
    await settle(http, tenant, {"refunds": 35 + 200 * 0.06 + 5}, **april)
    bad = await http.put(
        "/v1/settings/kpi", json={"refunds_by": "whenever"}, headers=tenant.headers
    )
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "refunds_by"


async def test_orders_by_sku_count_each_order_under_every_sku_it_holds(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant()
    await push(
        http,
        tenant,
        # O1 holds LAMP twice and MUG once; O2 holds MUG (cancelled); O3 holds LAMP.
        line("a1", "O1", 1, "10.00", "2026-04-10T18:00:00Z", sku="LAMP"),
        line("a2", "O1", 2, "10.00", "2026-04-10T19:00:00Z", sku="LAMP"),
        line("a3", "O1", 1, "5.00", "2026-04-10T20:00:00Z", sku="MUG"),
        line("b1", "O2", 1, "5.00", "2026-04-11T18:00:00Z", sku="MUG", status="cancelled"),
        line("c1", "O3", 1, "10.00", "2026-04-12T18:00:00Z", sku="LAMP"),
    )
    await settle(http, tenant, {"orders": 2.0})
    body = await kpis(
        http,
        tenant,
        metrics="orders,aov,cancel_rate",
        grain="total",
        group_by="sku",
        **APRIL_WINDOW,
    )
    by_sku = {
        row["dimensions"][0]["value"]: {v["metric"]: v["value"] for v in row["values"]}
        for row in body["rows"]
    }
    # LAMP: O1 and O3, GMV 30 + 10; MUG: O1 live, O2 cancelled, GMV 5.
    assert by_sku == {
        "LAMP": {"orders": 2.0, "aov": 20.0, "cancel_rate": 0.0},
        "MUG": {"orders": 1.0, "aov": 5.0, "cancel_rate": 0.5},
    }
    one = await totals(http, tenant, "orders", skus="MUG", **APRIL_WINDOW)
    assert one == {"orders": 1.0}
    # O1's MUG line is cancelled: O1 leaves MUG's live orders but still holds LAMP.
    cancelled = line("a3", "O1", 1, "5.00", "2026-04-10T20:00:00Z", sku="MUG", status="cancelled")
    cancelled["version"] = 2
    await push(http, tenant, cancelled)
    for _ in range(150):
        now = await totals(http, tenant, "orders", skus="MUG", **APRIL_WINDOW)
        if now == {"orders": 0.0}:
            break
        await asyncio.sleep(0.2)
    assert now == {"orders": 0.0}
    assert await totals(http, tenant, "orders", skus="LAMP", **APRIL_WINDOW) == {"orders": 2.0}


async def test_sku_measures_group_and_filter_by_the_skus_category(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant()
    lamp = line("k1", "K1", 1, "40.00", "2026-04-10T18:00:00Z", sku="LAMP")
    lamp["payload"]["category"] = "home"
    toy = line("k2", "K2", 1, "20.00", "2026-04-10T18:00:00Z", sku="TOY")
    toy["payload"]["category"] = "toys"
    await push(
        http,
        tenant,
        lamp,
        toy,
        event(
            "kr",
            "refund",
            {
                "order_id": "K1",
                "sku": "LAMP",
                "amount": {"amount": "4.00", "currency": "USD"},
                "refunded_at": "2026-04-12T18:00:00Z",
            },
        ),
        event(
            "kf",
            "fee",
            {
                "fee_type": "commission",
                "sku": "TOY",
                "amount": {"amount": "3.00", "currency": "USD"},
                "charged_at": "2026-04-11T18:00:00Z",
            },
        ),
        event(
            "kg",
            "fee",
            {
                "fee_type": "storage",
                "amount": {"amount": "1.00", "currency": "USD"},
                "charged_at": "2026-04-11T18:00:00Z",
            },
        ),
    )
    await settle(http, tenant, {"fees": 4.0, "refunds": 4.0})
    body = await kpis(
        http, tenant, metrics="gmv,refunds,fees", grain="total", group_by="category", **APRIL_WINDOW
    )
    by_category = {
        row["dimensions"][0]["value"]: {v["metric"]: v["value"] for v in row["values"]}
        for row in body["rows"]
    }
    # A fee of no SKU has no category; it still counts, under "".
    assert by_category == {
        "": {"gmv": 0.0, "refunds": 0.0, "fees": 1.0},
        "home": {"gmv": 40.0, "refunds": 4.0, "fees": 0.0},
        "toys": {"gmv": 20.0, "refunds": 0.0, "fees": 3.0},
    }
    home = await totals(http, tenant, "refund_rate", categories="home", **APRIL_WINDOW)
    assert home == {"refund_rate": 0.1}
    snapshot = {"date": "2026-04-14", "sku": "LAMP", "warehouse": "w1", "on_hand": 5}
    await push(http, tenant, event("ki", "inventory_snapshot", snapshot))
    await settle(http, tenant, {"on_hand": 5.0})
    stock = await totals(http, tenant, "on_hand,sell_through", categories="home", **APRIL_WINDOW)
    # Home sold 1 lamp and holds 5: sell-through 1 / (1 + 5).
    assert stock["on_hand"] == 5.0 and abs(stock["sell_through"] - 1 / 6) < 1e-12
    toys = await totals(http, tenant, "on_hand", categories="toys", **APRIL_WINDOW)
    # No toy was snapshotted: its stock is unknown, not zero.
    assert toys == {"on_hand": None}


async def totals_by(
    http: httpx.AsyncClient, tenant: TenantClient, **params: str
) -> dict[tuple[str, ...], dict[str, Any]]:
    """Each group's values over the April window, by the group's dimension values."""
    body = await kpis(http, tenant, grain="total", **APRIL_WINDOW, **params)
    return {
        tuple(d["value"] for d in row["dimensions"]): {
            v["metric"]: v["value"] for v in row["values"]
        }
        for row in body["rows"]
    }


def item(event_id: str, order_id: str, sku: str, category: str, **extra: Any) -> dict[str, Any]:
    """A line of one unit at 10.00 on 10 April, of ``sku`` in ``category``."""
    made = line(event_id, order_id, 1, "10.00", "2026-04-10T18:00:00Z", sku=sku, **extra)
    made["payload"]["category"] = category
    return made


async def test_orders_by_category_count_each_order_once_per_category(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant()

    await push(
        http,
        tenant,
        # C1 holds two home SKUs and one toy; C2 one home SKU, cancelled.
        item("c1a", "C1", "LAMP", "home"),
        item("c1b", "C1", "RUG", "home"),
        item("c1c", "C1", "TOY", "toys"),
        item("c2a", "C2", "LAMP", "home", status="cancelled"),
    )
    await settle(http, tenant, {"orders": 1.0})
    by_category = await totals_by(http, tenant, metrics="orders,cancel_rate", group_by="category")
    assert by_category == {
        ("home",): {"orders": 1.0, "cancel_rate": 0.5},
        ("toys",): {"orders": 1.0, "cancel_rate": 0.0},
    }
    assert await totals(http, tenant, "aov", categories="home", **APRIL_WINDOW) == {"aov": 20.0}


async def test_an_order_partly_cancelled_is_cancelled_under_no_sku_or_category(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant()
    await push(
        http,
        tenant,
        # P1 ships its lamp and cancels its toy: not a cancelled order (CONTRACT §4).
        item("p1a", "P1", "LAMP", "home"),
        item("p1b", "P1", "TOY", "toys", status="cancelled"),
        # P2 cancels its only line: a cancelled order, under the toy and toys.
        item("p2a", "P2", "TOY", "toys", status="cancelled"),
    )
    await settle(http, tenant, {"orders": 1.0, "cancel_rate": 0.5})
    metrics = "orders,cancel_rate"
    assert await totals_by(http, tenant, metrics=metrics, group_by="sku") == {
        ("LAMP",): {"orders": 1.0, "cancel_rate": 0.0},
        ("TOY",): {"orders": 0.0, "cancel_rate": 0.5},
    }
    assert await totals_by(http, tenant, metrics=metrics, group_by="category") == {
        ("home",): {"orders": 1.0, "cancel_rate": 0.0},
        ("toys",): {"orders": 0.0, "cancel_rate": 0.5},
    }
    # Of several SKUs at once (counted distinct from each order's SKUs).
    both = await totals(http, tenant, metrics, skus="LAMP,TOY", **APRIL_WINDOW)
    assert both == {"orders": 1.0, "cancel_rate": 0.5}
    # P1's lamp cancelled too: now P1 is cancelled whole, under every SKU it holds.
    await push(
        http, tenant, {**item("p1a", "P1", "LAMP", "home", status="cancelled"), "version": 2}
    )
    await settle(http, tenant, {"orders": 0.0, "cancel_rate": 1.0})
    assert await totals_by(http, tenant, metrics=metrics, group_by="sku") == {
        ("LAMP",): {"orders": 0.0, "cancel_rate": 1.0},
        ("TOY",): {"orders": 0.0, "cancel_rate": 1.0},
    }


async def test_an_order_counts_under_every_category_its_lines_name(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant()
    # One SKU, two lines, two categories (one line's category was renamed, say).
    await push(http, tenant, item("m1", "M1", "DESK", "desks"), item("m2", "M1", "DESK", "office"))
    await settle(http, tenant, {"orders": 1.0, "gmv": 20.0})
    metrics = "gmv,orders,aov"
    assert await totals_by(http, tenant, metrics=metrics, group_by="category") == {
        ("desks",): {"gmv": 10.0, "orders": 1.0, "aov": 10.0},
        ("office",): {"gmv": 10.0, "orders": 1.0, "aov": 10.0},
    }
    assert await totals_by(http, tenant, metrics=metrics, group_by="sku") == {
        ("DESK",): {"gmv": 20.0, "orders": 1.0, "aov": 20.0},
    }
    assert await totals_by(http, tenant, metrics=metrics, group_by="sku,category") == {
        ("DESK", "desks"): {"gmv": 10.0, "orders": 1.0, "aov": 10.0},
        ("DESK", "office"): {"gmv": 10.0, "orders": 1.0, "aov": 10.0},
    }
    both = await totals(http, tenant, "orders", categories="desks,office", **APRIL_WINDOW)
    assert both == {"orders": 1.0}


async def test_orders_by_any_mix_of_skus_and_categories_count_each_order_once(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant()

    await push(
        http,
        tenant,
        item("m1a", "M1", "LAMP", "home"),
        item("m1b", "M1", "RUG", "home"),
        item("m1c", "M1", "TOY", "toys"),
        item("m2a", "M2", "LAMP", "home", status="cancelled"),
        item("m3a", "M3", "TOY", "toys"),
        item("m3b", "M3", "LAMP", "home"),
        item("m4a", "M4", "RUG", "home"),
    )
    await settle(http, tenant, {"orders": 3.0})

    by_both = await totals_by(http, tenant, metrics="orders,cancel_rate", group_by="sku,category")
    assert by_both == {
        ("LAMP", "home"): {"orders": 2.0, "cancel_rate": 1 / 3},
        ("RUG", "home"): {"orders": 2.0, "cancel_rate": 0.0},
        ("TOY", "toys"): {"orders": 2.0, "cancel_rate": 0.0},
    }
    # M1 and M3 hold both SKUs and count once each; M2 (cancelled) only among all orders.
    either = await totals(http, tenant, "orders,cancel_rate,aov", skus="LAMP,TOY", **APRIL_WINDOW)
    assert either == {"orders": 2.0, "cancel_rate": 1 / 3, "aov": 20.0}
    both_categories = await totals(
        http, tenant, "orders,cancel_rate", categories="home,toys", **APRIL_WINDOW
    )
    assert both_categories == {"orders": 3.0, "cancel_rate": 0.25}
    home_skus = await totals_by(http, tenant, metrics="orders", group_by="sku", categories="home")
    assert home_skus == {("LAMP",): {"orders": 2.0}, ("RUG",): {"orders": 2.0}}
    # M1 holds LAMP and RUG, both home: once under home.
    by_category = await totals_by(
        http, tenant, metrics="orders,cancel_rate", group_by="category", skus="LAMP,RUG"
    )
    assert by_category == {("home",): {"orders": 3.0, "cancel_rate": 0.25}}
    one_of_each = await totals(
        http, tenant, "orders", skus="TOY", categories="toys", **APRIL_WINDOW
    )
    assert one_of_each == {"orders": 2.0}


async def count_refunds_by_purchase_date(http: httpx.AsyncClient, tenant: TenantClient) -> None:
    put = await http.put(
        "/v1/settings/kpi", json={"refunds_by": "purchase_date"}, headers=tenant.headers
    )
    assert put.status_code == 200, put.text


async def test_a_refund_by_purchase_date_leaves_no_row_on_the_day_its_order_left(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant()
    await count_refunds_by_purchase_date(http, tenant)
    window = {"from": "2026-03-29", "to": "2026-04-03"}
    await push(
        http,
        tenant,
        line("m1", "M1", 1, "100.00", "2026-03-30T18:00:00Z"),
        refund("mr", "M1", "30.00", "USD", "acme-us", "US"),
    )
    await settle(http, tenant, {"refunds": 30.0}, **{"from": "2026-03-30", "to": "2026-03-30"})
    # A new version of its only line moves the order, and so its refund, to 2 April.
    moved = {**line("m1", "M1", 1, "100.00", "2026-04-02T18:00:00Z"), "version": 2}
    await push(http, tenant, moved)
    await settle(http, tenant, {"refunds": 30.0}, **{"from": "2026-04-02", "to": "2026-04-02"})
    body = await kpis(http, tenant, metrics="refunds", grain="day", group_by="store", **window)
    assert [(r["period"], r["values"][0]["value"]) for r in body["rows"]] == [("2026-04-02", 30.0)]


async def test_a_refund_waiting_for_its_order_follows_its_stores_time_zone(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant()
    await count_refunds_by_purchase_date(http, tenant)
    # 20:00 UTC on 30 April is 13:00 that day in Los Angeles, 05:00 on 1 May in Tokyo.
    late = refund("w1", "WAITING", "30.00", "USD", "acme-us", "US")
    late["payload"]["refunded_at"] = "2026-04-30T20:00:00Z"
    await push(http, tenant, late)
    april = {"from": "2026-04-01", "to": "2026-04-30"}
    may = {"from": "2026-05-01", "to": "2026-05-31"}
    await settle(http, tenant, {"refunds": 30.0}, **april)
    zoned = await http.put(
        "/v1/settings/stores/acme-us", json={"timezone": "Asia/Tokyo"}, headers=tenant.headers
    )
    assert zoned.status_code == 200, zoned.text
    await settle(http, tenant, {"refunds": 30.0}, **may)
    assert (await totals(http, tenant, "refunds", **april))["refunds"] == 0
    # Its order arrives, placed on 10 April in Tokyo: the refund joins that day.
    await push(http, tenant, line("w1-line", "WAITING", 1, "50.00", "2026-04-10T03:00:00Z"))
    await settle(http, tenant, {"refunds": 30.0}, **april)
    assert (await totals(http, tenant, "refunds", **may))["refunds"] == 0
