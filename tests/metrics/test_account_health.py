"""Account-health rates from shipments, with their rolling windows."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import httpx

from tests.conftest import NewTenant
from tests.metrics.test_kpis import kpis, line, seed
from tests.metrics.test_profit_and_ads import event, wait_for


async def test_shipment_rates_hand_computed(http: httpx.AsyncClient, new_tenant: NewTenant) -> None:
    tenant = await new_tenant()
    events = [
        event(
            "s1",
            "shipment",
            {
                "order_id": "1",
                "promised_ship_by": "2026-04-10T18:00:00Z",
                "shipped_at": "2026-04-09T18:00:00Z",
                "tracking_valid": True,
                "promised_delivery_by": "2026-04-15T18:00:00Z",
                "delivered_at": "2026-04-14T18:00:00Z",
            },
        ),
        event(
            "s2",
            "shipment",
            {
                "order_id": "2",
                "promised_ship_by": "2026-04-12T18:00:00Z",
                "shipped_at": "2026-04-13T18:00:00Z",
                "tracking_valid": False,
                "promised_delivery_by": "2026-04-18T18:00:00Z",
                "delivered_at": "2026-04-20T18:00:00Z",
            },
        ),
        # Never shipped, and its promised day is long past: late.
        event("s3", "shipment", {"order_id": "3", "promised_ship_by": "2026-04-14T18:00:00Z"}),
        # Cancelled by the seller before shipping: never due, so never late (it counts
        # in pre_fulfillment_cancel_rate instead).
        event(
            "s5",
            "shipment",
            {
                "order_id": "5",
                "promised_ship_by": "2026-04-13T18:00:00Z",
                "cancelled_by_seller_before_ship": True,
            },
        ),
        # Due on 1 March: outside the 10 days ending on 15 April.
        event(
            "s4",
            "shipment",
            {
                "order_id": "4",
                "promised_ship_by": "2026-03-01T18:00:00Z",
                "shipped_at": "2026-03-05T18:00:00Z",
                "tracking_valid": True,
            },
        ),
    ]
    assert (
        await http.post("/v1/events", json={"events": events}, headers=tenant.headers)
    ).status_code == 202
    window = {"from": "2026-04-01", "to": "2026-04-15"}
    # Over all of April, s2 (delivered late on the 20th) counts too: 1 of 2 on time.
    await wait_for(http, tenant, "on_time_delivery_rate", 0.5)
    body = await kpis(
        http,
        tenant,
        metrics="late_shipment_rate,valid_tracking_rate,on_time_delivery_rate",
        grain="total",
        **window,
    )
    got = {v["metric"]: v["value"] for v in body["rows"][0]["values"]}
    # Due 6-15 April: s1, s2, s3; late: s2 (shipped after) and s3 (never shipped).
    assert abs(got["late_shipment_rate"] - 2 / 3) < 1e-12
    # Shipped 17 March - 15 April: s1 (tracked), s2 (not); s4 shipped 5 March is outside.
    assert got["valid_tracking_rate"] == 0.5
    # Delivered 1-15 April: s1, on time.
    assert got["on_time_delivery_rate"] == 1.0
    # The day after, compared with the day before: the 15th's windows, though the 15th
    # lies before the range asked for.
    next_day = await kpis(
        http, tenant, metrics="late_shipment_rate,valid_tracking_rate", grain="day",
        compare_to="previous_period", **{"from": "2026-04-16", "to": "2026-04-16"},
    )  # fmt: skip
    previous = {v["metric"]: v["previous"] for v in next_day["rows"][0]["values"]}
    assert abs(previous["late_shipment_rate"] - 2 / 3) < 1e-12
    assert previous["valid_tracking_rate"] == 0.5
    # Account health has no SKU: by SKU it is null, saying why, and the rest of the
    # question is answered.
    by_sku = await kpis(
        http, tenant, metrics="late_shipment_rate,orders", grain="total", group_by="sku",
        **window,
    )  # fmt: skip
    assert by_sku["warnings"] == ["late_shipment_rate is not available by sku: its values are null"]
    # No line was pushed: no SKU has a row.
    assert by_sku["rows"] == []
    one_sku = await kpis(
        http, tenant, metrics="csat", grain="total", skus="LAMP", **window
    )  # fmt: skip
    assert one_sku["rows"][0]["values"][0]["value"] is None
    assert one_sku["warnings"] == ["csat is not available by sku: its values are null"]
    # By store, a day whose window holds no shipment has no row: no data then.
    grouped = await kpis(
        http, tenant, metrics="late_shipment_rate", grain="day", group_by="store",
        **{"from": "2026-03-20", "to": "2026-03-21"},
    )  # fmt: skip
    assert grouped["rows"] == []
    grouped = await kpis(
        http, tenant, metrics="late_shipment_rate", grain="day", group_by="store",
        **{"from": "2026-03-10", "to": "2026-03-11"},
    )  # fmt: skip
    # s4 was due on 1 March: inside the 10 days to the 10th, outside those to the 11th.
    assert [row["period"] for row in grouped["rows"]] == ["2026-03-10"]


async def test_a_promise_due_later_today_where_the_store_is_is_not_late_yet(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    """The store's day decides, not the server's: the store is put where it is about
    21:30 now, so its day may differ from UTC's (it does from 21:00 to 09:00 UTC)."""
    tenant = await new_tenant()
    now = datetime.now(UTC)
    offset = round(21.5 - (now.hour + now.minute / 60))
    offset = offset - 24 if offset > 14 else offset + 24 if offset < -12 else offset
    zone = "Etc/GMT" if offset == 0 else f"Etc/GMT{-offset:+d}"  # Etc/GMT+5 is UTC-5
    stored = await http.put(
        "/v1/settings/stores/acme-us", json={"timezone": zone}, headers=tenant.headers
    )
    assert stored.status_code == 200, stored.text
    today = now.astimezone(ZoneInfo(zone)).date()
    later_today = (now + timedelta(minutes=20)).isoformat()
    earlier_today = (now - timedelta(minutes=20)).isoformat()
    yesterday = datetime.combine(today - timedelta(days=1), time(12), ZoneInfo(zone)).isoformat()
    on_time = {"order_id": "4", "promised_ship_by": later_today, "shipped_at": earlier_today}
    events = [
        # Promised for 20 minutes from now and not shipped: not due yet, nor late.
        event("due-later", "shipment", {"order_id": "1", "promised_ship_by": later_today}),
        event("due-before", "shipment", {"order_id": "2", "promised_ship_by": yesterday}),
        # Promised for 20 minutes ago, the same local day: not shipped by now, so late.
        event("due-earlier", "shipment", {"order_id": "3", "promised_ship_by": earlier_today}),
        event("shipped-on-time", "shipment", on_time),
    ]
    assert (
        await http.post("/v1/events", json={"events": events}, headers=tenant.headers)
    ).status_code == 202
    window = {"from": today.isoformat(), "to": today.isoformat()}
    for _ in range(150):
        body = await kpis(http, tenant, metrics="late_shipment_rate", grain="total", **window)
        if body["rows"][0]["values"][0]["value"] is not None:
            break
        await asyncio.sleep(0.2)
    # Three due over the 10 days to today (the one still to ship is not due yet);
    # yesterday's and the one of 20 minutes ago are late.
    assert abs(body["rows"][0]["values"][0]["value"] - 2 / 3) < 1e-12
    # Shipped after all, an hour late: still late, now as shipped late.
    shipped = event(
        "due-earlier", "shipment",
        {"order_id": "3", "promised_ship_by": earlier_today, "shipped_at": now.isoformat()},
    )  # fmt: skip
    shipped["version"] = 2
    assert (
        await http.post("/v1/events", json={"events": [shipped]}, headers=tenant.headers)
    ).status_code == 202
    for _ in range(150):
        body = await kpis(
            http, tenant, metrics="late_shipment_rate,valid_tracking_rate", grain="total", **window
        )
        if body["rows"][0]["values"][1]["value"] is not None:
            break
        await asyncio.sleep(0.2)
    assert abs(body["rows"][0]["values"][0]["value"] - 2 / 3) < 1e-12


async def test_a_promise_passing_makes_the_same_question_answer_late(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    """No event arrives between the two asks: only the clock moves, and the answer
    (cached under the tenant's data version) must follow it."""
    tenant = await new_tenant()
    promised = datetime.now(UTC) + timedelta(seconds=8)
    day = promised.astimezone(ZoneInfo("America/Los_Angeles")).date().isoformat()
    soon = event(
        "due-soon", "shipment", {"order_id": "1", "promised_ship_by": promised.isoformat()}
    )
    shipped = event(
        "shipped", "shipment",
        {"order_id": "2", "promised_ship_by": promised.isoformat(),
         "shipped_at": datetime.now(UTC).isoformat()},
    )  # fmt: skip
    assert (
        await http.post("/v1/events", json={"events": [soon, shipped]}, headers=tenant.headers)
    ).status_code == 202
    window = {"from": day, "to": day}
    for _ in range(150):
        body = await kpis(http, tenant, metrics="late_shipment_rate", grain="total", **window)
        if body["rows"][0]["values"][0]["value"] is not None:
            break
        await asyncio.sleep(0.2)
    assert datetime.now(UTC) < promised, "the shipment took longer than 8 s to apply"
    # Its promise still to come, the open shipment is not due: the shipped one alone is.
    assert body["rows"][0]["values"][0]["value"] == 0.0
    await asyncio.sleep(max(0.0, (promised - datetime.now(UTC)).total_seconds()) + 0.5)
    body = await kpis(http, tenant, metrics="late_shipment_rate", grain="total", **window)
    assert body["rows"][0]["values"][0]["value"] == 0.5


async def test_every_kpi_by_sku_answers_account_health_null_and_the_rest(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    """A table of every KPI by SKU: account health has no SKU, so its cells are null,
    said once in the warnings, and every other column is answered."""
    tenant = await new_tenant()
    await seed(http, tenant, [line("l1", "O1", 2, "10.00", "2026-04-03T18:00:00Z", sku="LAMP")])
    body = await kpis(
        http, tenant, metrics="gmv,order_defect_rate,units,csat", grain="total",
        group_by="sku", order_by="csat", **{"from": "2026-04-01", "to": "2026-04-30"},
    )  # fmt: skip
    assert body["rows"] == [
        {
            "period": "TOTAL",
            "dimensions": [{"key": "sku", "value": "LAMP"}],
            "values": [
                {"metric": "gmv", "value": 20.0, "previous": None, "change": None},
                {"metric": "order_defect_rate", "value": None, "previous": None, "change": None},
                {"metric": "units", "value": 2.0, "previous": None, "change": None},
                {"metric": "csat", "value": None, "previous": None, "change": None},
            ],
        }
    ]
    assert body["warnings"] == [
        "order_defect_rate is not available by sku: its values are null",
        "csat is not available by sku: its values are null",
    ]
