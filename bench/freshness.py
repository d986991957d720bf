"""Freshness: at a steady push rate, how long from the 202 to the value in `kpis`.

Background load pushes order lines for one tenant at a fixed rate through the gateway;
a probe tenant pushes one line at a time and polls GraphQL until its GMV includes it.
Prints p50/p95/max of that delay and, as the baseline in the same run, the same probe
with no background load.

    python bench/freshness.py [--rate 2000] [--seconds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import time
from typing import Any

import httpx

from bench.stack import BenchTenant, machine, new_tenant, percentile, running_stack

QUERY = """query($i: KpiQueryInput!) { kpis(input: $i) { rows { values { metric value } } } }"""
PROBE_INPUT = {"metrics": ["units"], "from": "2026-01-01", "to": "2026-12-31", "grain": "TOTAL"}


def line(n: int, quantity: int = 1) -> dict[str, Any]:
    order = f"{secrets.token_hex(6)}-{n}"
    return {
        "event_id": f"ev-{order}",
        "type": "order_line",
        "source": {"platform": "amazon", "store_id": "bench-us", "marketplace": "US"},
        "occurred_at": "2026-06-01T18:00:00Z",
        "payload": {
            "order_id": order, "line_id": "1", "sku": f"SKU-{n % 2000}", "quantity": quantity,
            "unit_price": {"amount": "19.99", "currency": "USD"}, "status": "shipped",
            "purchased_at": "2026-06-01T18:00:00Z",
        },
    }  # fmt: skip


async def load(
    client: httpx.AsyncClient, tenant: BenchTenant, rate: int, stop: asyncio.Event
) -> int:
    """Pushes ``rate`` events a second in ten batches a second until ``stop``."""
    batch = max(1, rate // 10)
    sent = 0
    started = time.monotonic()
    while not stop.is_set():
        events = [line(sent + i) for i in range(batch)]
        response = await client.post("/v1/events", json={"events": events}, headers=tenant.headers)
        response.raise_for_status()
        sent += batch
        lag = started + sent / rate - time.monotonic()
        if lag > 0:
            await asyncio.sleep(lag)
    return sent


async def probe(
    client: httpx.AsyncClient, tenant: BenchTenant, count: int, already: int = 0
) -> list[float]:
    """``count`` probes, one at a time; ``already`` probes of this tenant came before."""
    delays = []
    for n in range(already, already + count):
        response = await client.post(
            "/v1/events", json={"events": [line(n)]}, headers=tenant.headers
        )
        response.raise_for_status()
        accepted = time.monotonic()
        while True:
            body = (
                await client.post(
                    "/graphql",
                    json={"query": QUERY, "variables": {"i": PROBE_INPUT}},
                    headers=tenant.headers,
                )
            ).json()
            rows = body["data"]["kpis"]["rows"]
            if rows and rows[0]["values"][0]["value"] == n + 1:
                break
            await asyncio.sleep(0.005)
        delays.append(time.monotonic() - accepted)
        await asyncio.sleep(0.1)
    return delays


async def run(
    rate: int,
    seconds: int,
    base_url: str,
    loaded: BenchTenant,
    idle: BenchTenant,
    busy: BenchTenant,
) -> None:
    limits = httpx.Limits(max_connections=20)
    async with httpx.AsyncClient(base_url=base_url, timeout=60, limits=limits) as client:
        # The first probe also waits for the consumer's group join: not part of the figure.
        await probe(client, idle, 1)
        baseline = await probe(client, idle, 20, already=1)
        stop = asyncio.Event()
        loader = asyncio.create_task(load(client, loaded, rate, stop))
        await asyncio.sleep(2)
        started = time.monotonic()
        delays: list[float] = []
        while time.monotonic() - started < seconds:
            delays += await probe(client, busy, 5, already=len(delays))
        stop.set()
        sent = await loader
    elapsed = time.monotonic() - started + 2
    print(f"machine: {machine()}")
    print(
        f"background load: {sent} events in {elapsed:.1f} s = {sent / elapsed:,.0f} events/s (target {rate}/s)"
    )
    print(
        f"freshness under load, {len(delays)} probes: p50 {percentile(delays, 0.5) * 1000:.0f} ms, "
        f"p95 {percentile(delays, 0.95) * 1000:.0f} ms, max {max(delays) * 1000:.0f} ms (goal: p95 < 1000 ms)"
    )
    print(
        f"baseline, idle stack, {len(baseline)} probes: p50 {percentile(baseline, 0.5) * 1000:.0f} ms, "
        f"p95 {percentile(baseline, 0.95) * 1000:.0f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=int, default=2000)
    parser.add_argument("--seconds", type=int, default=20)
    args = parser.parse_args()
    with running_stack() as config:
        tenants = [new_tenant(config) for _ in range(3)]
        asyncio.run(run(args.rate, args.seconds, config.url("gateway"), *tenants))


if __name__ == "__main__":
    main()
