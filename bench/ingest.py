"""Ingest: mixed events pushed through POST /v1/events until every one is queryable.

Pushes order lines, fees, ad spend and traffic (7:1:1:1) through the gateway in
batches of 5,000 from four concurrent clients, then waits until the metrics
consumer's own counter has applied all of them and checks the units in `kpis`.
Baseline in the same run: a plain asyncpg COPY of the same events into an unindexed
table of the same PostgreSQL.

    python -m bench.ingest [--events 1000000]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import asyncpg
import httpx
import orjson

from bench.stack import BenchTenant, machine, new_tenant, running_stack
from shared.db import asyncpg_dsn

BATCH = 5000
CLIENTS = 4
SOURCE = {"platform": "amazon", "store_id": "bench-us", "marketplace": "US"}


def event(n: int) -> dict[str, Any]:
    kind = n % 10
    day = f"2026-{1 + n % 12:02d}-{1 + n % 28:02d}"
    base = {"event_id": f"ev-{n}", "source": SOURCE, "occurred_at": f"{day}T12:00:00Z"}
    if kind == 7:
        return {
            **base,
            "type": "fee",
            "payload": {
                "fee_type": "commission",
                "amount": {"amount": "1.25", "currency": "USD"},
                "charged_at": f"{day}T12:00:00Z",
            },
        }
    if kind == 8:
        return {
            **base,
            "type": "ad_spend",
            "payload": {
                "date": day,
                "campaign_id": "c1",
                "sku": f"SKU-{n % 2000}",
                "impressions": 100,
                "clicks": 3,
                "cost": {"amount": "0.90", "currency": "USD"},
                "attributed_sales": {"amount": "19.99", "currency": "USD"},
                "attributed_orders": 1,
            },
        }
    if kind == 9:
        return {
            **base,
            "type": "traffic",
            "payload": {"date": day, "sku": f"SKU-{n % 2000}", "sessions": 12, "page_views": 20},
        }
    return {**base, "type": "order_line", "payload": {
        "order_id": f"o-{n}", "line_id": "1", "sku": f"SKU-{n % 2000}", "quantity": 1,
        "unit_price": {"amount": "19.99", "currency": "USD"}, "status": "shipped",
        "purchased_at": f"{day}T12:00:00Z", "category": "lighting"}}  # fmt: skip


def request_bodies(total: int) -> list[bytes]:
    """Every request body, built before the clock starts: the load generator shares the
    two cores with the stack, and building 5,000 events is not the stack's work."""
    return [
        orjson.dumps({"events": [event(n) for n in range(start, min(total, start + BATCH))]})
        for start in range(0, total, BATCH)
    ]


async def push_all(base_url: str, tenant: BenchTenant, bodies: list[bytes]) -> float:
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)

    async def worker(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            body = queue.get_nowait()
            response = await client.post(
                "/v1/events",
                content=body,
                headers={**tenant.headers, "Content-Type": "application/json"},
            )
            response.raise_for_status()

    started = time.monotonic()
    async with httpx.AsyncClient(base_url=base_url, timeout=300) as client:
        await asyncio.gather(*(worker(client) for _ in range(CLIENTS)))
    return time.monotonic() - started


async def wait_applied(metrics_url: str, total: int) -> None:
    async with httpx.AsyncClient(timeout=30) as client:
        while (await client.get(f"{metrics_url}/internal/consumer")).json()["applied"] < total:
            await asyncio.sleep(0.25)


async def copy_baseline(database_url: str, total: int) -> float:
    rows = [(e["event_id"], e["type"], orjson.dumps(e).decode()) for e in map(event, range(total))]
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        await conn.execute("CREATE TEMP TABLE copy_baseline (event_id text, type text, body jsonb)")
        started = time.monotonic()
        await conn.copy_records_to_table("copy_baseline", records=rows)
        return time.monotonic() - started
    finally:
        await conn.close()


async def units(base_url: str, tenant: BenchTenant) -> float:
    async with httpx.AsyncClient(base_url=base_url, timeout=60) as client:
        response = await client.get(
            "/v1/kpis",
            params={"metrics": "units", "from": "2026-01-01", "to": "2026-12-31", "grain": "total"},
            headers=tenant.headers,
        )
        value: float = response.json()["rows"][0]["values"][0]["value"]
        return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000)
    args = parser.parse_args()
    total = args.events
    with running_stack() as config:
        tenant = new_tenant(config)
        bodies = request_bodies(total)
        started = time.monotonic()
        pushed = asyncio.run(push_all(config.url("gateway"), tenant, bodies))
        asyncio.run(wait_applied(config.url("metrics"), total))
        end_to_end = time.monotonic() - started
        counted = asyncio.run(units(config.url("gateway"), tenant))
        copy_seconds = asyncio.run(copy_baseline(config.database_url, total))
    expected_units = sum(1 for n in range(total) if n % 10 < 7)
    print(f"machine: {machine()}")
    print(
        f"{total:,} mixed events: accepted (202) in {pushed:.1f} s = {total / pushed:,.0f} events/s"
    )
    print(
        f"end to end, push to queryable: {end_to_end:.1f} s = {total / end_to_end:,.0f} events/s (goal: 50,000/s)"
    )
    print(f"check: units in kpis {counted:,.0f}, expected {expected_units:,}")
    print(
        f"baseline, asyncpg COPY of the same events into an unindexed table: {copy_seconds:.1f} s = {total / copy_seconds:,.0f} rows/s"
    )


if __name__ == "__main__":
    main()
