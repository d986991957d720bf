"""Property: whatever order events arrive in, in whatever batches and versions, the
answers read from the incremental rollups equal a plain recomputation from the facts."""

from __future__ import annotations

import asyncio
import secrets
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.metrics.facts.consumer import apply_messages
from services.metrics.facts.zones import set_store_zone
from services.metrics.kpis.query import parse_query
from services.metrics.kpis.service import run_query
from shared.db import Database
from shared.events import EventMessage
from shared.time import local_date

START = datetime(2026, 3, 1, tzinfo=UTC)

line_events = st.builds(
    lambda n, order, version, status, quantity, cents, minutes, market, sku, category: {
        "event_id": f"e{n}",
        "order": f"o{order}",
        "version": version,
        "status": status,
        "quantity": quantity,
        "price": Decimal(cents) / 100,
        "at": START + timedelta(minutes=minutes),
        "market": market,
        "sku": sku,
        "category": category,
    },
    st.integers(0, 7),
    st.integers(0, 3),
    st.integers(1, 3),
    st.sampled_from(["pending", "shipped", "cancelled"]),
    st.integers(1, 3),
    st.integers(1, 50_000),
    st.integers(0, 60 * 24 * 60),
    st.sampled_from(["US", "MX"]),
    st.sampled_from(["LAMP", "RUG", "TOY"]),
    st.sampled_from(["", "home", "toys"]),
)


def latest_versions(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each event id's highest version, the first of it to arrive (the same version
    again is a duplicate)."""
    latest: dict[str, dict[str, Any]] = {}
    for e in events:
        if e["event_id"] not in latest or e["version"] > latest[e["event_id"]]["version"]:
            latest[e["event_id"]] = e
    return latest


def message(tenant: str, e: dict[str, Any]) -> EventMessage:
    return EventMessage.model_validate(
        {
            "tenant_id": tenant,
            "event_id": e["event_id"],
            "type": "order_line",
            "version": e["version"],
            "source": {"platform": "amazon", "store_id": "s", "marketplace": e["market"]},
            "occurred_at": e["at"],
            "ingested_at": e["at"],
            "payload": {
                "order_id": e["order"],
                "line_id": e["event_id"],
                "sku": e["sku"],
                "category": e["category"] or None,
                "quantity": e["quantity"],
                "unit_price": {"amount": str(e["price"]), "currency": "USD"},
                "status": e["status"],
                "purchased_at": e["at"].isoformat(),
            },
        }
    )


def recompute(events: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Decimal]]:
    """By (month, marketplace): gmv, units and orders, straight from the latest lines."""
    latest = latest_versions(events)
    answer: dict[tuple[str, str], dict[str, Decimal]] = defaultdict(
        lambda: {"gmv": Decimal(0), "units": Decimal(0), "orders": Decimal(0)}
    )
    by_order: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in latest.values():
        by_order[e["order"]].append(e)
        if e["status"] != "cancelled":
            month = local_date(e["at"], e["market"]).replace(day=1).isoformat()
            answer[(month, e["market"])]["gmv"] += e["quantity"] * e["price"]
            answer[(month, e["market"])]["units"] += e["quantity"]
    for lines in by_order.values():
        first = min(lines, key=lambda e: (e["at"], e["event_id"]))
        month = local_date(first["at"], first["market"]).replace(day=1).isoformat()
        # An order placed, even cancelled whole, is data of its group: its row shows.
        cell = answer[(month, first["market"])]
        if any(e["status"] != "cancelled" for e in lines):
            cell["orders"] += 1
    return dict(answer)


async def answered(
    database_url: str,
    to_messages: Callable[[str], list[EventMessage]],
    cuts: list[int],
    params: dict[str, str | None],
    *more: dict[str, str | None],
    store_zones: dict[str, str] | None = None,
) -> list[dict[str, Any]]:
    """The answers to ``params`` and ``more`` for a tenant of its own, after
    ``to_messages(tenant)`` were applied in batches cut at ``cuts`` (the stores given
    their own zones first)."""
    db = Database(database_url, "metrics", pool_size=2)
    tenant = f"tn_{secrets.token_hex(6)}"
    try:
        async with db.raw_connection() as conn, conn.transaction():
            for store, zone in (store_zones or {}).items():
                await set_store_zone(conn, tenant, store, zone)
        messages = to_messages(tenant)
        start = 0
        for cut in [*sorted(set(cuts)), len(messages)]:
            if cut > start:
                await apply_messages(db, messages[start:cut])
                start = cut
        bodies = []
        async with db.raw_connection() as conn:
            for question in (params, *more):
                body, _ = await run_query(conn, parse_query(tenant, question))
                bodies.append(body)
    finally:
        await db.dispose()
    return bodies


async def check(database_url: str, events: list[dict[str, Any]], cuts: list[int]) -> None:
    [body] = await answered(
        database_url,
        lambda tenant: [message(tenant, e) for e in events],
        cuts,
        {"metrics": "gmv,units,orders", "from": "2026-02-01", "to": "2026-05-31",
         "grain": "month", "group_by": "marketplace", "currency": "USD"},
    )  # fmt: skip
    got = {
        (row["period"], row["dimensions"][0]["value"]): {
            v["metric"]: v["value"] for v in row["values"]
        }
        for row in body["rows"]
    }
    # Every group some fact is in has a row, and no other group: a group every line
    # left by a new version has none.
    expected = recompute(events)
    assert set(got) == set(expected), (got, expected)
    for cell, measures in expected.items():
        for name, value in measures.items():
            tolerance = Decimal("1e-6") * max(Decimal(1), abs(value))
            assert abs(Decimal(str(got[cell][name])) - value) <= tolerance, (cell, name)


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    events=st.lists(line_events, min_size=1, max_size=25),
    cuts=st.lists(st.integers(0, 25), max_size=4),
)
def test_rollups_equal_a_recomputation_from_the_facts(
    metrics_database: str, events: list[dict[str, Any]], cuts: list[int]
) -> None:
    asyncio.run(check(metrics_database, events, cuts))


def recompute_orders(
    events: list[dict[str, Any]], group_by: list[str], filters: dict[str, list[str]]
) -> dict[tuple[str, ...], tuple[int, int, int]]:
    """By (month, *group_by): orders with a live line, all orders and orders cancelled
    whole (every line of the order), counted once per group, from the SKU and category
    of each of its lines."""
    latest = latest_versions(events)
    by_order: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in latest.values():
        by_order[e["order"]].append(e)
    live: dict[tuple[str, ...], set[str]] = defaultdict(set)
    placed: dict[tuple[str, ...], set[str]] = defaultdict(set)
    cancelled: dict[tuple[str, ...], set[str]] = defaultdict(set)
    for order, lines in by_order.items():
        first = min(lines, key=lambda e: (e["at"], e["event_id"]))
        month = local_date(first["at"], first["market"]).replace(day=1).isoformat()
        for held in lines:
            if any(held[d] not in values for d, values in filters.items()):
                continue
            cell = (month, *(held[d] for d in group_by))
            placed[cell].add(order)
            if held["status"] != "cancelled":
                live[cell].add(order)
            if all(e["status"] == "cancelled" for e in lines):
                cancelled[cell].add(order)
    return {
        cell: (len(live[cell]), len(orders), len(cancelled[cell]))
        for cell, orders in placed.items()
    }


async def check_orders(
    database_url: str,
    events: list[dict[str, Any]],
    group_by: list[str],
    filters: dict[str, list[str]],
) -> None:
    params: dict[str, str | None] = {"metrics": "orders,cancel_rate", "from": "2026-02-01", "to": "2026-05-31",
              "grain": "month", "group_by": ",".join(group_by)}  # fmt: skip
    for dimension, values in filters.items():
        params[{"sku": "skus", "category": "categories"}[dimension]] = ",".join(values)
    # Two batches: the second moves orders the first counted.
    [body] = await answered(
        database_url,
        lambda tenant: [message(tenant, e) for e in events],
        [len(events) // 2],
        params,
    )
    got = {}
    for row in body["rows"]:
        answer = {v["metric"]: v["value"] for v in row["values"]}
        if not group_by and answer["cancel_rate"] is None:
            continue  # without groupBy every period has a row, zeros included
        cell = (row["period"], *(d["value"] for d in row["dimensions"]))
        got[cell] = (answer["orders"], answer["cancel_rate"])
    expected = recompute_orders(events, group_by, filters)
    assert set(got) == set(expected), (got, expected)
    for cell, (orders, placed, cancelled) in expected.items():
        assert got[cell][0] == orders, (cell, got[cell], expected[cell])
        assert abs(got[cell][1] - cancelled / placed) < 1e-12, (cell, got[cell], expected[cell])


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    events=st.lists(line_events, min_size=1, max_size=15),
    group_by=st.lists(st.sampled_from(["sku", "category"]), unique=True),
    skus=st.none() | st.lists(st.sampled_from(["LAMP", "RUG", "TOY"]), min_size=1, unique=True),
    categories=st.none() | st.lists(st.sampled_from(["home", "toys"]), min_size=1, unique=True),
)
def test_orders_by_any_skus_and_categories_equal_a_recomputation(
    metrics_database: str,
    events: list[dict[str, Any]],
    group_by: list[str],
    skus: list[str] | None,
    categories: list[str] | None,
) -> None:
    filters = {
        name: values
        for name, values in (("sku", skus), ("category", categories))
        if values is not None
    }
    asyncio.run(check_orders(metrics_database, events, group_by, filters))


snapshot_events = st.builds(
    lambda n, version, sku, warehouse, day, minutes, on_hand, store, marketplace: {
        "event_id": f"s{n}",
        "version": version,
        "sku": sku,
        "warehouse": warehouse,
        "store": store,
        "marketplace": marketplace,
        "date": f"2026-03-0{day}",
        # Few distinct instants, so that counts taken at the same moment occur.
        "at": START + timedelta(minutes=30 * minutes),
        "on_hand": on_hand,
    },
    st.integers(0, 7),
    st.integers(1, 3),
    st.sampled_from(["A", "B"]),
    st.sampled_from(["w1", "w2"]),
    st.integers(1, 3),
    st.integers(0, 3),
    st.integers(0, 4),
    st.sampled_from(["s", "t"]),
    # A store's snapshots may name any marketplace of its account.
    st.sampled_from(["US", "MX"]),
)


def snapshot_message(tenant: str, e: dict[str, Any]) -> EventMessage:
    return EventMessage.model_validate(
        {
            "tenant_id": tenant,
            "event_id": e["event_id"],
            "type": "inventory_snapshot",
            "version": e["version"],
            "source": {
                "platform": "amazon", "store_id": e["store"], "marketplace": e["marketplace"]
            },
            "occurred_at": e["at"],
            "ingested_at": e["at"],
            "payload": {
                "date": e["date"], "sku": e["sku"], "warehouse": e["warehouse"],
                "on_hand": e["on_hand"],
            },
        }
    )  # fmt: skip


def recompute_stock(
    events: list[dict[str, Any]], by_marketplace: bool = False
) -> dict[tuple[str, ...], tuple[int, float]]:
    """By (day, SKU), or (day, SKU, marketplace): units on hand, the latest snapshot of
    each store's warehouse added up, and the stockout rate of that one SKU-day, whatever
    stores and marketplaces it spans (within its marketplace, by marketplace)."""
    latest = latest_versions(events)
    counted: dict[tuple[str, str, str, str], dict[str, Any]] = {}
    for e in latest.values():
        key = (e["date"], e["sku"], e["store"], e["warehouse"])
        if key not in counted or (e["at"], e["event_id"]) > (
            counted[key]["at"],
            counted[key]["event_id"],
        ):
            counted[key] = e
    stock: dict[tuple[str, ...], int] = defaultdict(int)
    for (day, sku, _, _), e in counted.items():
        stock[(day, sku, *([e["marketplace"]] if by_marketplace else []))] += e["on_hand"]
    return {cell: (units, 1.0 if units == 0 else 0.0) for cell, units in stock.items()}


async def check_stock(database_url: str, events: list[dict[str, Any]], cuts: list[int]) -> None:
    window = {"from": "2026-03-01", "to": "2026-03-03", "grain": "day"}
    bodies = await answered(
        database_url,
        lambda tenant: [snapshot_message(tenant, e) for e in events],
        cuts,
        {"metrics": "on_hand,stockout_rate", "group_by": "sku", **window},
        {"metrics": "on_hand,stockout_rate", "group_by": "sku,marketplace", **window},
    )
    for body, by_marketplace in zip(bodies, (False, True), strict=True):
        got = {}
        for row in body["rows"]:
            answer = {v["metric"]: v["value"] for v in row["values"]}
            if answer["on_hand"] is not None:
                dimensions = tuple(d["value"] for d in row["dimensions"])
                got[(row["period"], *dimensions)] = (answer["on_hand"], answer["stockout_rate"])
        assert got == recompute_stock(events, by_marketplace)


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    events=st.lists(snapshot_events, min_size=1, max_size=15),
    cuts=st.lists(st.integers(0, 15), max_size=4),
)
def test_stock_equals_the_latest_snapshots_added_over_warehouses(
    metrics_database: str, events: list[dict[str, Any]], cuts: list[int]
) -> None:
    asyncio.run(check_stock(metrics_database, events, cuts))


FEE_CENTS = {("US", "LAMP"): 1, ("US", "RUG"): 10, ("US", "TOY"): 100}
FEE_CENTS |= {("MX", sku): cents * 1000 for (_, sku), cents in FEE_CENTS.items()}


def fee_message(tenant: str, market: str, sku: str) -> EventMessage:
    return EventMessage.model_validate(
        {
            "tenant_id": tenant,
            "event_id": f"fee-{market}-{sku}",
            "type": "fee",
            "version": 1,
            "source": {"platform": "amazon", "store_id": "s", "marketplace": market},
            "occurred_at": START,
            "ingested_at": START,
            "payload": {
                "fee_type": "commission", "sku": sku, "charged_at": "2026-03-15T12:00:00Z",
                "amount": {"amount": str(Decimal(FEE_CENTS[(market, sku)]) / 100), "currency": "USD"},
            },
        }
    )  # fmt: skip


def recompute_fees_by_category(
    events: list[dict[str, Any]], markets: list[str]
) -> dict[str, Decimal]:
    """Fees of ``markets`` by the category of their SKU: the one its newest line (by
    purchase time, then event id) names among the lines of those markets (every market
    here, when the question names none)."""
    latest = latest_versions(events)
    fees: dict[str, Decimal] = defaultdict(Decimal)
    for market in markets:
        for sku in ("LAMP", "RUG", "TOY"):
            named = [
                e
                for e in latest.values()
                if e["sku"] == sku and e["category"] and e["market"] in markets
            ]
            newest = max(named, key=lambda e: (e["at"], e["event_id"]), default=None)
            category = newest["category"] if newest else ""
            fees[category] += Decimal(FEE_CENTS[(market, sku)]) / 100
    return dict(fees)


async def check_fee_categories(
    database_url: str,
    events: list[dict[str, Any]],
    cuts: list[int],
    markets: list[str],
    narrowed: bool,
) -> None:
    params: dict[str, str | None] = {"metrics": "fees", "from": "2026-02-01", "to": "2026-05-31",
              "grain": "total", "group_by": "category"}  # fmt: skip
    if narrowed:
        params["marketplaces"] = ",".join(markets)
    [body] = await answered(
        database_url,
        lambda tenant: [
            *(fee_message(tenant, market, sku) for market, sku in FEE_CENTS),
            *(message(tenant, e) for e in events),
        ],
        cuts,
        params,
    )
    got = {row["dimensions"][0]["value"]: row["values"][0]["value"] for row in body["rows"]}
    expected = recompute_fees_by_category(events, markets)
    assert got.keys() == expected.keys(), (got, expected)
    for category, fees in expected.items():
        assert abs(Decimal(str(got[category])) - fees) < Decimal("1e-9"), (got, expected)


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    # Lines bought on three days only, so that several tie on their purchase time.
    events=st.lists(
        line_events.map(lambda e: {**e, "at": START + timedelta(days=e["at"].day % 3)}),
        min_size=1,
        max_size=15,
    ),
    cuts=st.lists(st.integers(0, 21), max_size=4),
    markets=st.sampled_from([["US", "MX"], ["US"], ["MX"]]),
    narrowed=st.booleans(),
)
def test_measures_take_the_category_their_skus_newest_line_names(
    metrics_database: str,
    events: list[dict[str, Any]],
    cuts: list[int],
    markets: list[str],
    narrowed: bool,
) -> None:
    # Naming every market must answer as naming none.
    asyncio.run(
        check_fee_categories(metrics_database, events, cuts, markets, narrowed or len(markets) < 2)
    )


# Two stores with zones of their own, one following its marketplace's.
STORE_ZONES = {"tokyo-s": "Asia/Tokyo", "ny-s": "America/New_York"}
MARKET_ZONES = {"US": "America/Los_Angeles", "JP": "Asia/Tokyo"}

refund_events = st.builds(
    lambda n, version, store, market, cents, minutes: {
        "event_id": f"r{n}",
        "version": version,
        "store": store,
        "market": market,
        "amount": Decimal(cents) / 100,
        # Around 31 March's end, where the three zones' dates part.
        "at": datetime(2026, 3, 31, 4, tzinfo=UTC) + timedelta(minutes=minutes),
    },
    st.integers(0, 5),
    st.integers(1, 3),
    st.sampled_from(["tokyo-s", "ny-s", "plain-s"]),
    st.sampled_from(["US", "JP"]),
    st.integers(1, 10_000),
    st.integers(0, 24 * 60),
)


def refund_message(tenant: str, e: dict[str, Any]) -> EventMessage:
    return EventMessage.model_validate(
        {
            "tenant_id": tenant,
            "event_id": e["event_id"],
            "type": "refund",
            "version": e["version"],
            "source": {"platform": "amazon", "store_id": e["store"], "marketplace": e["market"]},
            "occurred_at": e["at"],
            "ingested_at": e["at"],
            "payload": {
                "order_id": "o1",
                "amount": {"amount": str(e["amount"]), "currency": "USD"},
                "refunded_at": e["at"].isoformat(),
            },
        }
    )


async def check_refund_moves(
    database_url: str, events: list[dict[str, Any]], cuts: list[int]
) -> None:
    [body] = await answered(
        database_url,
        lambda tenant: [refund_message(tenant, e) for e in events],
        cuts,
        {"metrics": "refunds", "from": "2026-03-30", "to": "2026-04-02", "grain": "day",
         "group_by": "store", "currency": "USD"},
        store_zones=STORE_ZONES,
    )  # fmt: skip
    latest = latest_versions(events)
    expected: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for e in latest.values():
        zone = ZoneInfo(STORE_ZONES.get(e["store"], MARKET_ZONES[e["market"]]))
        expected[(e["at"].astimezone(zone).date().isoformat(), e["store"])] += e["amount"]
    got = {
        (row["period"], row["dimensions"][0]["value"]): Decimal(str(row["values"][0]["value"]))
        for row in body["rows"]
    }
    assert got == dict(expected)


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    events=st.lists(refund_events, min_size=1, max_size=12),
    cuts=st.lists(st.integers(0, 12), max_size=4),
)
def test_refunds_moved_between_stores_leave_the_day_their_store_counted_them_on(
    metrics_database: str, events: list[dict[str, Any]], cuts: list[int]
) -> None:
    """New versions move refunds between stores with zones of their own and one without:
    each is taken out of the local day it was counted on."""
    asyncio.run(check_refund_moves(metrics_database, events, cuts))
