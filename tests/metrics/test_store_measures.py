"""Property: the per-store measures always equal the per-SKU measures summed over SKUs,
whatever events arrive, in whatever batches and versions, and after a store's time zone
changes; and a question naming no SKU, answered from them, equals the sum by SKU."""

from __future__ import annotations

import asyncio
import secrets
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.metrics.facts.consumer import apply_messages
from services.metrics.facts.zones import set_store_zone
from services.metrics.kpis.query import parse_query
from services.metrics.kpis.service import run_query
from shared.db import Database
from shared.events import EventMessage

START = datetime(2026, 3, 30, 20, tzinfo=UTC)
SKUS = ["LAMP", "RUG", None]


def money(cents: int, currency: str) -> dict[str, str]:
    return {"amount": str(Decimal(cents) / 100), "currency": currency}


def payload(kind: str, order: int, sku: str | None, cents: int, at: datetime) -> dict[str, Any]:
    """A payload of ``kind`` touching the measures; refunds and shipments name an order,
    so they also move the cells kept by its purchase date."""
    currency = "USD" if cents % 2 else "MXN"
    if kind == "order_line":
        return {"order_id": f"o{order}", "line_id": "1", "sku": sku or "LAMP", "quantity": 1,
                "unit_price": money(cents, "USD"), "status": "shipped",
                "purchased_at": at.isoformat()}  # fmt: skip
    if kind == "refund":
        return {"order_id": f"o{order}", "sku": sku, "amount": money(cents, currency),
                "refunded_at": at.isoformat()}  # fmt: skip
    if kind == "fee":
        return {"fee_type": "commission", "amount": money(cents, currency),
                "charged_at": at.isoformat(), "sku": sku}  # fmt: skip
    if kind == "ad_spend":
        return {"date": at.date().isoformat(), "campaign_id": "c", "sku": sku,
                "impressions": cents, "clicks": cents % 7, "cost": money(cents, currency),
                "attributed_sales": money(cents * 3, currency), "attributed_orders": cents % 3}  # fmt: skip
    if kind == "traffic":
        return {"date": at.date().isoformat(), "sku": sku or "RUG", "sessions": cents % 50,
                "page_views": cents % 90}  # fmt: skip
    return {"order_id": f"o{order}", "promised_ship_by": at.isoformat(),
            "shipped_at": (at + timedelta(hours=cents % 40)).isoformat(),
            "cancelled_by_seller_before_ship": cents % 5 == 0}  # fmt: skip


events = st.lists(
    st.builds(
        lambda n, version, kind, order, sku, cents, hours, market: {
            "event_id": f"{kind}-{n}",
            "type": kind,
            "version": version,
            "market": market,
            "payload": payload(kind, order, sku, cents, START + timedelta(hours=hours)),
        },
        st.integers(0, 5),
        st.integers(1, 3),
        st.sampled_from(["order_line", "refund", "fee", "ad_spend", "traffic", "shipment"]),
        st.integers(0, 2),
        st.sampled_from(SKUS),
        st.integers(1, 9_999),
        st.integers(0, 72),
        st.sampled_from(["US", "MX"]),
    ),
    min_size=1,
    max_size=20,
)


def message(tenant: str, e: dict[str, Any]) -> EventMessage:
    return EventMessage.model_validate(
        {
            "tenant_id": tenant,
            "event_id": e["event_id"],
            "type": e["type"],
            "version": e["version"],
            # One store per marketplace: an order and its refunds share the store.
            "source": {"platform": "amazon", "store_id": e["market"], "marketplace": e["market"]},
            "occurred_at": START,
            "ingested_at": START,
            "payload": e["payload"],
        }
    )


STORE_CELL = "tenant_id, measure, local_date, platform, store_id, marketplace, currency"


async def check(database_url: str, batches: list[list[dict[str, Any]]], zone: str | None) -> None:
    db = Database(database_url, "metrics", pool_size=2)
    tenant = f"tn_{secrets.token_hex(6)}"
    # Every amount converts, so a null never stands for a missing rate here.
    rate = {"event_id": "rate", "type": "fx_rate", "version": 1, "market": "US",
            "payload": {"date": "2026-03-01", "base": "USD", "quote": "MXN", "rate": "17.5"}}  # fmt: skip
    try:
        await apply_messages(db, [message(tenant, rate)])
        for number, batch in enumerate(batches):
            await apply_messages(db, [message(tenant, e) for e in batch])
            if number == 0 and zone is not None:
                async with db.raw_connection() as conn, conn.transaction():
                    await set_store_zone(conn, tenant, "MX", zone)
        async with db.raw_connection() as conn:
            per_store = await conn.fetch(
                f"SELECT {STORE_CELL}, value FROM daily_store_measures "
                f"WHERE tenant_id = $1 AND value <> 0",
                tenant,
            )
            summed = await conn.fetch(
                f"SELECT {STORE_CELL}, sum(value) AS value FROM daily_measures "
                f"WHERE tenant_id = $1 GROUP BY {STORE_CELL} HAVING sum(value) <> 0",
                tenant,
            )
            assert {tuple(r.values()) for r in per_store} == {tuple(r.values()) for r in summed}

            def ask(group_by: str) -> Any:
                query = parse_query(
                    tenant,
                    {"metrics": "refunds,fees,ad_spend,ad_sales,clicks,sessions",
                     "from": "2026-03-01", "to": "2026-04-30", "grain": "month",
                     "group_by": group_by, "currency": "MXN"},
                )  # fmt: skip
                return run_query(conn, query)

            whole, _ = await ask("store")
            by_sku, _ = await ask("store,sku")
    finally:
        await db.dispose()
    totals: dict[tuple[str, str, str], Decimal] = {}
    for row in by_sku["rows"]:
        for value in row["values"]:
            cell = (row["period"], row["dimensions"][0]["value"], value["metric"])
            totals[cell] = totals.get(cell, Decimal(0)) + Decimal(str(value["value"] or 0))
    for row in whole["rows"]:
        for value in row["values"]:
            cell = (row["period"], row["dimensions"][0]["value"], value["metric"])
            expected = totals.get(cell, Decimal(0))
            got = Decimal(str(value["value"] or 0))
            assert abs(got - expected) <= Decimal("1e-6") * max(Decimal(1), abs(expected)), cell


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    batches=st.lists(events, min_size=1, max_size=3),
    zone=st.sampled_from([None, "Asia/Tokyo"]),
)
def test_store_measures_equal_the_sku_measures_summed(
    metrics_database: str, batches: list[list[dict[str, Any]]], zone: str | None
) -> None:
    asyncio.run(check(metrics_database, batches, zone))
