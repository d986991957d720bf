"""Inventory KPIs: on_hand on the last snapshot day, sell-through, stockout rate."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from tests.conftest import NewTenant
from tests.metrics.test_kpis import kpis, line
from tests.metrics.test_profit_and_ads import event, wait_for


def snapshot(
    event_id: str, day: str, sku: str, warehouse: str, on_hand: int, version: int = 1
) -> dict[str, Any]:
    return event(
        event_id,
        "inventory_snapshot",
        {"date": day, "sku": sku, "warehouse": warehouse, "on_hand": on_hand},
        version=version,
    )


async def test_inventory_kpis_hand_computed(http: httpx.AsyncClient, new_tenant: NewTenant) -> None:
    tenant = await new_tenant()
    events = [
        line("a", "OA", 6, "10.00", "2026-04-12T18:00:00Z", sku="A"),
        line("b", "OB", 2, "10.00", "2026-04-12T18:00:00Z", sku="B"),
        # Sold in March: outside April, but inside the 30 days before 20 April.
        line("m", "OM", 30, "10.00", "2026-03-25T18:00:00Z", sku="A"),
        snapshot("s1", "2026-04-10", "A", "wh1", 10),
        snapshot("s2", "2026-04-10", "A", "wh2", 5),
        snapshot("s3", "2026-04-10", "B", "wh1", 0),
        snapshot("s4", "2026-04-20", "A", "wh1", 9),
        snapshot("s5", "2026-04-20", "B", "wh1", 6),
    ]
    assert (
        await http.post("/v1/events", json={"events": events}, headers=tenant.headers)
    ).status_code == 202
    await wait_for(http, tenant, "on_hand", 15.0)
    # A corrected count replaces the old one: A on the 20th is 4, not 9.
    fix = snapshot("s4", "2026-04-20", "A", "wh1", 4, version=2)
    assert (
        await http.post("/v1/events", json={"events": [fix]}, headers=tenant.headers)
    ).status_code == 202
    await wait_for(http, tenant, "on_hand", 10.0)

    window = {"from": "2026-04-01", "to": "2026-04-30"}
    body = await kpis(
        http, tenant, metrics="on_hand,sell_through,stockout_rate,units", grain="total", **window
    )
    got = {v["metric"]: v["value"] for v in body["rows"][0]["values"]}
    # Last snapshot day is the 20th: 4 + 6 on hand; 8 units sold; 1 of 4 SKU-days at zero.
    assert got["on_hand"] == 10.0
    assert got["units"] == 8.0
    assert abs(got["sell_through"] - 8 / 18) < 1e-12
    assert got["stockout_rate"] == 0.25
    by_sku = await kpis(
        http, tenant, metrics="on_hand,stockout_rate", grain="total", group_by="sku", **window
    )
    rows = {
        r["dimensions"][0]["value"]: {v["metric"]: v["value"] for v in r["values"]}
        for r in by_sku["rows"]
    }
    assert rows == {
        "A": {"on_hand": 4.0, "stockout_rate": 0.0},
        "B": {"on_hand": 6.0, "stockout_rate": 0.5},
    }
    # The 10th alone: that day's snapshots.
    day = await kpis(
        http, tenant, metrics="on_hand", grain="day", **{"from": "2026-04-10", "to": "2026-04-10"}
    )
    assert day["rows"][0]["values"][0]["value"] == 15.0
    # Days of cover: on hand / mean daily units of the 30 days ending on the bucket's end.
    cover = await kpis(http, tenant, metrics="days_of_cover", grain="total", **window)
    assert abs(cover["rows"][0]["values"][0]["value"] - 10 / (8 / 30)) < 1e-9
    early = await kpis(
        http,
        tenant,
        metrics="days_of_cover",
        grain="total",
        **{"from": "2026-04-01", "to": "2026-04-20"},
    )
    assert abs(early["rows"][0]["values"][0]["value"] - 10 / (38 / 30)) < 1e-9
    # Compared with the ten days before, 11-20 April: those days' own 30-day window.
    later = await kpis(
        http, tenant, metrics="days_of_cover", grain="total", compare_to="previous_period",
        **{"from": "2026-04-21", "to": "2026-04-30"},
    )  # fmt: skip
    assert abs(later["rows"][0]["values"][0]["previous"] - 10 / (38 / 30)) < 1e-9
    # Inventory by category groups the SKUs' snapshots by the category their lines name.
    by_category = await http.get(
        "/v1/kpis",
        params={"metrics": "on_hand", "grain": "total", "group_by": "category", **window},
        headers=tenant.headers,
    )
    assert by_category.status_code == 200


async def test_a_bucket_without_a_snapshot_has_no_stock_figures(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant()
    events = [
        snapshot("s1", "2026-04-06", "A", "wh1", 10),
        line("a", "OA", 3, "10.00", "2026-04-14T18:00:00Z", sku="A"),
    ]
    assert (
        await http.post("/v1/events", json={"events": events}, headers=tenant.headers)
    ).status_code == 202
    await wait_for(http, tenant, "units", 3.0)
    body = await kpis(
        http,
        tenant,
        metrics="on_hand,units,sell_through,days_of_cover,stockout_rate",
        grain="week",
        compare_to="previous_period",
        **{"from": "2026-04-06", "to": "2026-04-19"},
    )
    got = {
        row["period"]: {v["metric"]: (v["value"], v["previous"]) for v in row["values"]}
        for row in body["rows"]
    }
    # The week of the 6th was counted: 10 on hand. The week of the 13th was not: its
    # stock is unknown, not zero, and so is what follows from it.
    assert got["2026-04-06"]["on_hand"] == (10.0, None)
    assert got["2026-04-13"] == {
        "on_hand": (None, 10.0),
        "units": (3.0, 0.0),
        "sell_through": (None, 0.0),
        "days_of_cover": (None, None),
        "stockout_rate": (None, 0.0),
    }


def counted_at(event_id: str, day: str, sku: str, warehouse: str, on_hand: int, at: str,
               version: int = 1) -> dict[str, Any]:  # fmt: skip
    return {**snapshot(event_id, day, sku, warehouse, on_hand, version), "occurred_at": at}


async def test_a_warehouse_holds_its_latest_snapshot_of_a_date_whatever_its_event_id(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant()

    async def push(*events: dict[str, Any]) -> None:
        response = await http.post(
            "/v1/events", json={"events": list(events)}, headers=tenant.headers
        )
        assert response.status_code == 202, response.text

    async def stock() -> dict[tuple[str, str], tuple[float | None, float | None]]:
        body = await kpis(
            http, tenant, metrics="on_hand,stockout_rate", grain="day", group_by="sku",
            **{"from": "2026-04-09", "to": "2026-04-11"},
        )  # fmt: skip
        return {
            (row["period"], row["dimensions"][0]["value"]): tuple(v["value"] for v in row["values"])
            for row in body["rows"]
        }

    day = "2026-04-10"
    await push(
        counted_at("morning", day, "A", "wh1", 10, f"{day}T09:00:00Z"),
        # The evening count of the same warehouse replaces the morning's.
        counted_at("evening", day, "A", "wh1", 7, f"{day}T18:00:00Z"),
        # Another warehouse adds to it.
        counted_at("wh2", day, "A", "wh2", 5, f"{day}T09:00:00Z"),
        counted_at("b-late", day, "B", "wh1", 0, f"{day}T09:00:00Z"),
    )
    await wait_for(http, tenant, "on_hand", 12.0)
    # Arriving later but counted earlier: it does not replace the count it precedes.
    # (C, behind it in the same partition, shows when it has been applied.)
    await push(
        counted_at("b-early", day, "B", "wh1", 4, f"{day}T08:00:00Z"),
        counted_at("c", "2026-04-09", "C", "wh1", 1, "2026-04-09T09:00:00Z"),
    )
    for _ in range(150):
        if ("2026-04-09", "C") in (counted := await stock()):
            break
        await asyncio.sleep(0.2)
    assert counted == {
        ("2026-04-09", "C"): (1.0, 0.0),
        ("2026-04-10", "A"): (12.0, 0.0),
        ("2026-04-10", "B"): (0.0, 1.0),
    }

    # A new version dates the evening count before the morning's: the morning's counts.
    await push(counted_at("evening", day, "A", "wh1", 7, f"{day}T08:00:00Z", version=2))
    await wait_for(http, tenant, "on_hand", 15.0)
    # A new version moves B's late count to the 11th: the early one counts on the 10th.
    await push(counted_at("b-late", "2026-04-11", "B", "wh1", 0, f"{day}T09:00:00Z", version=2))
    # April's last snapshot date is now the 11th, with B's count of 0 alone.
    await wait_for(http, tenant, "on_hand", 0.0)
    assert await stock() == {
        ("2026-04-09", "C"): (1.0, 0.0),
        ("2026-04-10", "A"): (15.0, 0.0),
        ("2026-04-10", "B"): (4.0, 0.0),
        ("2026-04-11", "B"): (0.0, 1.0),
    }


async def test_a_stores_latest_snapshot_replaces_one_sent_under_another_marketplace(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    """For stock a store is its platform and id: a morning count sent under US and an
    evening one under MX (one North America account) are one warehouse's counts."""
    tenant = await new_tenant()
    day = "2026-04-02"

    def under(marketplace: str, event: dict[str, Any]) -> dict[str, Any]:
        return {**event, "source": {**event["source"], "marketplace": marketplace}}

    response = await http.post(
        "/v1/events",
        json={
            "events": [
                under("US", counted_at("a-am", day, "A", "wh1", 10, f"{day}T08:00:00Z")),
                under("MX", counted_at("a-pm", day, "A", "wh1", 20, f"{day}T20:00:00Z")),
                under("US", counted_at("b-am", day, "B", "wh1", 0, f"{day}T08:00:00Z")),
                under("MX", counted_at("b-pm", day, "B", "wh1", 7, f"{day}T20:00:00Z")),
            ]
        },
        headers=tenant.headers,
    )
    assert response.status_code == 202, response.text
    await wait_for(http, tenant, "on_hand", 27.0)
    body = await kpis(
        http, tenant, metrics="on_hand,stockout_rate", grain="day",
        **{"from": day, "to": day},
    )  # fmt: skip
    assert [v["value"] for v in body["rows"][0]["values"]] == [27.0, 0.0]
    # The evening count comes again under US, dated before the morning's: the morning's
    # counts, and the MX cell it leaves holds nothing.
    moved = {**under("US", counted_at("a-pm", day, "A", "wh1", 20, f"{day}T07:00:00Z", version=2))}
    assert (
        await http.post("/v1/events", json={"events": [moved]}, headers=tenant.headers)
    ).status_code == 202
    await wait_for(http, tenant, "on_hand", 17.0)
    by_marketplace = await kpis(
        http, tenant, metrics="on_hand", grain="day", group_by="marketplace",
        **{"from": day, "to": day},
    )  # fmt: skip
    assert {
        row["dimensions"][0]["value"]: row["values"][0]["value"] for row in by_marketplace["rows"]
    } == {"US": 10.0, "MX": 7.0}


async def test_days_of_cover_gives_a_group_a_row_only_where_its_window_has_data(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant()
    sold = [
        line("c", "OC", 2, "10.00", "2026-02-15T20:00:00Z", sku="C"),
        snapshot("sd", "2026-01-20", "D", "wh1", 4),
    ]
    response = await http.post("/v1/events", json={"events": sold}, headers=tenant.headers)
    assert response.status_code == 202, response.text
    window = {"from": "2025-11-01", "to": "2026-03-31", "grain": "month", "group_by": "sku"}
    for _ in range(50):
        body = await kpis(http, tenant, metrics="days_of_cover", **window)
        if len(body["rows"]) >= 2:
            break
        await asyncio.sleep(0.2)
    rows = {(r["period"], r["dimensions"][0]["value"]) for r in body["rows"]}
    # C sold on 15 February: of the months' 30-day windows, only February's reaches it
    # (March's starts on 2 March). D was snapshotted in January, and sold nothing.
    assert rows == {("2026-02-01", "C"), ("2026-01-01", "D")}


async def test_a_sku_day_is_one_whatever_marketplaces_and_stores_its_warehouses_sit_in(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    """An empty warehouse under US and a full one under MX hold one SKU-day in stock; a
    SKU empty everywhere is one SKU-day out of stock, however many rows it spans."""
    tenant = await new_tenant()
    day, next_day = "2026-04-25", "2026-04-26"

    def at(store: str, marketplace: str, event: dict[str, Any]) -> dict[str, Any]:
        return {
            **event,
            "source": {**event["source"], "store_id": store, "marketplace": marketplace},
        }

    events = [
        at("s1", "US", snapshot("y1", day, "Y", "W1", 0)),
        at("s1", "MX", snapshot("y2", day, "Y", "W2", 10)),
        at("s1", "US", snapshot("q1", day, "Q", "W1", 0)),
        at("s2", "US", snapshot("q2", day, "Q", "W2", 4)),
        # Empty on the first day in two marketplaces, stocked on the next: one SKU-day
        # out of two is out of stock, not two of three.
        at("s1", "US", snapshot("z1", day, "Z", "W1", 0)),
        at("s1", "MX", snapshot("z2", day, "Z", "W2", 0)),
        at("s1", "US", snapshot("z3", next_day, "Z", "W1", 5)),
    ]
    response = await http.post("/v1/events", json={"events": events}, headers=tenant.headers)
    assert response.status_code == 202, response.text
    await wait_for(http, tenant, "on_hand", 5.0)

    async def by(group_by: str) -> dict[str, list[float | None]]:
        body = await kpis(
            http, tenant, metrics="on_hand,stockout_rate", grain="total", group_by=group_by,
            **{"from": day, "to": next_day},
        )  # fmt: skip
        return {
            ",".join(d["value"] for d in row["dimensions"]): [v["value"] for v in row["values"]]
            for row in body["rows"]
        }

    assert await by("sku") == {"Y": [10.0, 0.0], "Q": [4.0, 0.0], "Z": [5.0, 0.5]}
    total = await kpis(
        http, tenant, metrics="stockout_rate", grain="day", **{"from": day, "to": next_day}
    )
    # The 25th: Y and Q in stock, Z empty; the 26th: Z in stock.
    assert [row["values"][0]["value"] for row in total["rows"]] == [1 / 3, 0.0]
    # Grouped by marketplace, each marketplace's warehouses make their own SKU-days.
    assert await by("marketplace") == {"US": [5.0, 0.5], "MX": [10.0, 0.5]}
    assert await by("store") == {"s1": [5.0, 0.5], "s2": [4.0, 0.0]}
    # Narrowed to one store, its SKU-days are those of its warehouses alone.
    s1 = await kpis(
        http, tenant, metrics="on_hand,stockout_rate", grain="total", stores="s1",
        **{"from": day, "to": next_day},
    )  # fmt: skip
    assert [v["value"] for v in s1["rows"][0]["values"]] == [5.0, 0.5]
    # A SKU's category (from its order lines) groups its SKU-days, whatever their stores.
    lamp = line("y-line", "OY", 1, "10.00", f"{day}T18:00:00Z", sku="Y")
    lamp["payload"]["category"] = "Lamps"
    response = await http.post("/v1/events", json={"events": [lamp]}, headers=tenant.headers)
    assert response.status_code == 202, response.text
    for _ in range(100):
        lamps = await kpis(
            http, tenant, metrics="on_hand,stockout_rate,units", grain="total",
            group_by="category", categories="Lamps", **{"from": day, "to": next_day},
        )  # fmt: skip
        if lamps["rows"]:
            break
        await asyncio.sleep(0.1)
    assert [v["value"] for v in lamps["rows"][0]["values"]] == [10.0, 0.0, 1.0]


async def test_the_widest_identifiers_ingest_takes_are_counted(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    """A platform of 64 emoji and a store, order, SKU, category and warehouse of 170
    Chinese characters each (510 bytes, the most ingest takes) fit every key metrics
    keeps them in: counted, not dead-lettered as an index entry too large."""
    tenant = await new_tenant()
    widest = {name: char * 170 for name, char in (("store", "店"), ("order", "单"),
              ("sku", "货"), ("category", "类"), ("warehouse", "仓"))}  # fmt: skip
    source = {"platform": "🛒" * 64, "store_id": widest["store"], "marketplace": "US"}
    sold = line("wide-line", widest["order"], 2, "10.00", "2026-04-12T18:00:00Z",
                sku=widest["sku"])  # fmt: skip
    sold["payload"]["category"] = widest["category"]
    counted = snapshot("wide-count", "2026-04-12", widest["sku"], widest["warehouse"], 5)
    events = [{**event, "source": source} for event in (sold, counted)]
    assert (
        await http.post("/v1/events", json={"events": events}, headers=tenant.headers)
    ).status_code == 202
    await wait_for(http, tenant, "on_hand", 5.0)
    await wait_for(http, tenant, "units", 2.0)
    by_sku = await kpis(
        http, tenant, metrics="units,orders,on_hand", grain="total", group_by="sku,category",
        **{"from": "2026-04-01", "to": "2026-04-30"},
    )  # fmt: skip
    [row] = by_sku["rows"]
    assert [d["value"] for d in row["dimensions"]] == [widest["sku"], widest["category"]]
    assert {v["metric"]: v["value"] for v in row["values"]} == {
        "units": 2.0, "orders": 1.0, "on_hand": 5.0
    }  # fmt: skip
