"""A store's own time zone moves its local dates, history included (CONTRACT §3)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import asyncpg
import httpx

from tests.conftest import NewTenant, TenantClient
from tests.metrics.test_kpis import kpis, line
from tests.metrics.test_order_attached import push, settle
from tests.metrics.test_profit_and_ads import event

SPRING = {"from": "2026-02-01", "to": "2026-04-30", "grain": "month"}


async def by_month(http: httpx.AsyncClient, tenant: TenantClient, **params: str) -> dict[str, Any]:
    body = await kpis(http, tenant, metrics="gmv,orders,refunds", **SPRING, **params)
    return {row["period"]: {v["metric"]: v["value"] for v in row["values"]} for row in body["rows"]}


async def test_a_store_zone_rebuckets_history_and_new_facts(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant()
    refund = event(
        "z-refund",
        "refund",
        {
            "order_id": "Z1",
            "amount": {"amount": "2.00", "currency": "USD"},
            "refunded_at": "2026-03-01T06:00:00Z",
        },
    )
    # 07:30 UTC on 1 March is 23:30 on 28 February in Los Angeles (the US default).
    await push(
        http,
        tenant,
        line("z1", "Z1", 1, "10.00", "2026-03-01T07:30:00Z"),
        line("z2", "Z2", 1, "7.00", "2026-03-01T07:30:00Z", store="acme-mx", marketplace="MX"),
        refund,
    )
    await settle(
        http, tenant, {"gmv": 17.0, "refunds": 2.0}, **{"from": "2026-02-01", "to": "2026-04-30"}
    )
    before = await by_month(http, tenant, stores="acme-us")
    assert before["2026-02-01"] == {"gmv": 10.0, "orders": 1.0, "refunds": 2.0}
    assert before["2026-03-01"] == {"gmv": 0.0, "orders": 0.0, "refunds": 0.0}

    moved = await http.put(
        "/v1/settings/stores/acme-us", json={"timezone": "America/New_York"}, headers=tenant.headers
    )
    assert moved.status_code == 200, moved.text
    assert moved.json()["moved"] == {"order_lines": 1, "events": 1}
    # In New York the same instants are 1 March: the line, its order and the refund move.
    after = await by_month(http, tenant, stores="acme-us")
    assert after["2026-02-01"] == {"gmv": 0.0, "orders": 0.0, "refunds": 0.0}
    assert after["2026-03-01"] == {"gmv": 10.0, "orders": 1.0, "refunds": 2.0}
    # Grouped, the month every fact left has no row, not a row of zeros.
    for metric in ("orders", "refunds"):
        for group_by in ("sku", "store"):
            grouped = await kpis(
                http, tenant, metrics=metric, group_by=group_by, stores="acme-us", **SPRING
            )
            counted = [(r["period"], r["values"][0]["value"]) for r in grouped["rows"]]
            expected = 1.0 if metric == "orders" else 2.0
            assert counted == [("2026-03-01", expected)], (metric, group_by, counted)
    # Another store keeps its marketplace's dates.
    mx = await by_month(http, tenant, stores="acme-mx")
    assert mx["2026-03-01"]["gmv"] == 7.0

    # New facts follow the store's zone: 04:30 UTC on 1 April is April in New York.
    await push(http, tenant, line("z3", "Z3", 1, "5.00", "2026-04-01T04:30:00Z"))
    await settle(
        http,
        tenant,
        {"gmv": 5.0},
        **{"from": "2026-04-01", "to": "2026-04-30", "stores": "acme-us"},
    )
    listed = await http.get("/v1/settings/stores", headers=tenant.headers)
    # A listing says what each store's zone is; what a change moved, its answer said.
    assert listed.json()["stores"] == [{"store_id": "acme-us", "timezone": "America/New_York"}]

    # Back to the marketplace's zone: everything returns.
    back = await http.put(
        "/v1/settings/stores/acme-us", json={"timezone": None}, headers=tenant.headers
    )
    assert back.status_code == 200 and back.json()["moved"]["order_lines"] == 2
    again = await by_month(http, tenant, stores="acme-us")
    assert again["2026-02-01"] == {"gmv": 10.0, "orders": 1.0, "refunds": 2.0}
    assert again["2026-03-01"] == {"gmv": 5.0, "orders": 1.0, "refunds": 0.0}
    assert again["2026-04-01"]["gmv"] == 0.0

    for zone in ("Mars/Olympus", "localtime", "posixrules", "Factory"):
        bad = await http.put(
            "/v1/settings/stores/acme-us", json={"timezone": zone}, headers=tenant.headers
        )
        assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "timezone", zone
    reader = await new_tenant(scopes=["kpi:read"])
    denied = await http.put(
        "/v1/settings/stores/acme-us", json={"timezone": None}, headers=reader.headers
    )
    assert denied.status_code == 403


async def test_a_store_id_is_read_as_events_name_stores(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    """Events trim store ids: an override kept for " s1 " would never apply to s1."""
    tenant = await new_tenant()
    padded = await http.put(
        "/v1/settings/stores/%20acme-us%20", json={"timezone": "Asia/Tokyo"}, headers=tenant.headers
    )
    assert padded.status_code == 200, padded.text
    assert padded.json()["store_id"] == "acme-us"
    listed = (await http.get("/v1/settings/stores", headers=tenant.headers)).json()["stores"]
    assert [z["store_id"] for z in listed] == ["acme-us"]
    # Nothing, and what no event could name as a store: too long, in characters or bytes.
    for bad in ("%20%20", "x" * 257, "店" * 171):
        refused = await http.put(
            f"/v1/settings/stores/{bad}", json={"timezone": "Asia/Tokyo"}, headers=tenant.headers
        )
        assert refused.status_code == 422, (bad, refused.text)
        assert refused.json()["errors"][0]["field"] == "store_id"


async def test_a_store_id_with_a_slash_gets_its_zone(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    """Events take any store id; one with a "/" (percent-encoded in the path) was 404."""
    tenant = await new_tenant()
    # 07:30 UTC on 1 March: 28 February in Los Angeles, 1 March in New York.
    await push(
        http, tenant, line("slash-1", "S1", 1, "10.00", "2026-03-01T07:30:00Z", store="acme/us")
    )
    await settle(http, tenant, {"gmv": 10.0}, **{"from": "2026-02-01", "to": "2026-04-30"})
    moved = await http.put(
        "/v1/settings/stores/acme%2Fus",
        json={"timezone": "America/New_York"},
        headers=tenant.headers,
    )
    assert moved.status_code == 200, moved.text
    assert moved.json()["store_id"] == "acme/us"
    assert moved.json()["moved"]["order_lines"] == 1
    after = await by_month(http, tenant, stores="acme/us")
    assert after["2026-03-01"]["gmv"] == 10.0


async def test_a_store_id_holding_a_percent_sign_is_the_store_named(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    """The gateway forwarded the path it had decoded, and metrics decoded it again:
    store `p%41`, sent as `p%2541`, became store `pA`, whose sales then moved."""
    tenant = await new_tenant()
    for store in ("p%41", "pA"):
        await push(
            http,
            tenant,
            line(f"pct-{store}", "S1", 1, "10.00", "2026-03-01T07:30:00Z", store=store),
        )
    await settle(http, tenant, {"gmv": 20.0}, **{"from": "2026-02-01", "to": "2026-04-30"})
    moved = await http.put(
        "/v1/settings/stores/p%2541", json={"timezone": "America/New_York"}, headers=tenant.headers
    )
    assert moved.status_code == 200, moved.text
    assert moved.json()["store_id"] == "p%41"
    assert moved.json()["moved"]["order_lines"] == 1
    assert (await by_month(http, tenant, stores="p%41"))["2026-03-01"]["gmv"] == 10.0
    assert (await by_month(http, tenant, stores="pA"))["2026-02-01"]["gmv"] == 10.0


async def test_a_store_id_holding_a_separator_or_a_line_feed_is_the_store_named(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    """Events keep U+001C and a line feed in a store id; the route and its filter took
    "\\x1cS" for the store "S" (another store's history moved), and "s\\n1" was 404."""
    tenant = await new_tenant()
    for store in ("\x1cS", "S", "s\n1", "a/../b"):
        await push(
            http,
            tenant,
            line(f"sep-{store!r}", "S1", 1, "10.00", "2026-03-01T07:30:00Z", store=store),
        )
    await settle(http, tenant, {"gmv": 40.0}, **{"from": "2026-02-01", "to": "2026-04-30"})
    # "a/../b" is one segment as sent (a%2F..%2Fb): the gateway took its decoded path for
    # one with a dot segment, and answered 404.
    for path, store in (("%1CS", "\x1cS"), ("s%0A1", "s\n1"), ("a%2F..%2Fb", "a/../b")):
        moved = await http.put(
            f"/v1/settings/stores/{path}",
            json={"timezone": "America/New_York"},
            headers=tenant.headers,
        )
        assert moved.status_code == 200, moved.text
        assert moved.json()["store_id"] == store
        assert moved.json()["moved"]["order_lines"] == 1
        assert (await by_month(http, tenant, stores=store))["2026-03-01"]["gmv"] == 10.0
    assert (await by_month(http, tenant, stores="S"))["2026-02-01"]["gmv"] == 10.0
    # A store no event named ("\x1cS\x1c") has nothing, where the other's sales showed.
    assert (await by_month(http, tenant, stores="\x1cS\x1c"))["2026-03-01"]["gmv"] == 0.0


async def test_a_new_version_leaves_a_zoned_store_from_the_day_it_was_counted_on(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    """Moved out of a store with its own zone by a batch that named that store nowhere
    else, a refund was taken out of the marketplace's day: -4 on 31 March in a store with
    nothing left, +4 kept on 1 April."""
    tenant = await new_tenant()
    zoned = await http.put(
        "/v1/settings/stores/tokyo-s", json={"timezone": "Asia/Tokyo"}, headers=tenant.headers
    )
    assert zoned.status_code == 200, zoned.text
    at = "2026-03-31T16:00:00Z"  # 31 March in Los Angeles, 1 April in Tokyo

    def refund(version: int, store: str) -> dict[str, Any]:
        moved = event(
            "zr-1",
            "refund",
            {"order_id": "ZR", "amount": {"amount": "4.00", "currency": "USD"}, "refunded_at": at},
            version,
        )
        return {**moved, "source": {**moved["source"], "store_id": store}}

    window = {"from": "2026-03-30", "to": "2026-04-02"}
    await push(http, tenant, refund(1, "tokyo-s"))
    await settle(http, tenant, {"refunds": 4.0}, **window)
    await push(http, tenant, refund(2, "plain-s"), {**refund(1, "plain-s"), "event_id": "zr-2"})
    await settle(http, tenant, {"refunds": 8.0}, **window)
    body = await kpis(http, tenant, metrics="refunds", grain="day", group_by="store", **window)
    counted = {
        (row["period"], row["dimensions"][0]["value"]): row["values"][0]["value"]
        for row in body["rows"]
    }
    assert counted == {("2026-03-31", "plain-s"): 8.0}


async def test_zone_changes_queued_behind_their_tenant_hold_no_connection_others_need(
    http: httpx.AsyncClient, new_tenant: NewTenant, pg: asyncpg.Connection
) -> None:
    """Each change waiting for its tenant's lock held one of metrics' 20 pooled
    connections: thirty from one admin, and every other tenant's question waited 30 s
    for a connection and got 503."""
    seller, other = await new_tenant(), await new_tenant()
    async with pg.transaction():
        # What a rebucketing of the seller holds while it runs.
        await pg.execute(
            "SELECT pg_advisory_xact_lock(hashtext('metrics.tenant:' || $1::text))",
            seller.tenant_id,
        )
        changes = [
            asyncio.create_task(
                http.put(
                    f"/v1/settings/stores/queued-{i}",
                    json={"timezone": "Asia/Tokyo"},
                    headers=seller.headers,
                    timeout=120,
                )
            )
            for i in range(25)
        ]
        await asyncio.sleep(1.0)
        started = time.monotonic()
        body = await kpis(
            http, other, metrics="gmv", grain="total", **{"from": "2026-03-01", "to": "2026-03-31"}
        )
        assert body["rows"] and time.monotonic() - started < 10
        # Nor another tenant's own change: two of the queue held both of the process's
        # turns, and it waited for the whole queue.
        started = time.monotonic()
        own = await http.put(
            "/v1/settings/stores/elsewhere",
            json={"timezone": "Asia/Tokyo"},
            headers=other.headers,
            timeout=30,
        )
        assert own.status_code == 200 and time.monotonic() - started < 10, own.text
        assert not any(change.done() for change in changes)
    answers = await asyncio.gather(*changes)
    assert [answer.status_code for answer in answers] == [200] * 25
