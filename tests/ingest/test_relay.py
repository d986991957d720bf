"""The outbox relay: every accepted event reaches Kafka, with its trace, even after an outage."""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import Any

import httpx
import orjson
from aiokafka import AIOKafkaConsumer

from devstack.embedded import EmbeddedBroker, free_port
from services.ingest.app import create_app
from services.ingest.config import Settings
from shared.events import topic_for
from tests.conftest import FreshDatabase, NewTenant, Stack, TokenMinter, serve_app

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


def realistic_line(n: int) -> dict[str, Any]:
    """An order line of about 600 bytes, as marketplaces' ids and names make them."""
    order_id = f"114-{n:07d}-{secrets.token_hex(4)}"
    return {
        "event_id": f"amazon-US-{order_id}-line-{n}-{secrets.token_hex(12)}",
        "type": "order_line",
        "version": 1,
        "source": {"platform": "amazon", "store_id": "acme-lighting-us-main", "marketplace": "US"},
        "occurred_at": "2026-03-01T07:15:00Z",
        "payload": {
            "order_id": order_id,
            "line_id": f"{n:014d}",
            "sku": f"ACME-LAMP-DESK-LED-{n % 2000:05d}-WHITE-US-PLUG",
            "quantity": 1 + n % 3,
            "unit_price": {"amount": "24.99", "currency": "USD"},
            "shipping_price": {"amount": "4.99", "currency": "USD"},
            "item_tax": {"amount": "2.06", "currency": "USD"},
            "discount": {"amount": "1.00", "currency": "USD"},
            "status": "shipped",
            "purchased_at": "2026-03-01T07:15:00Z",
            "category": "Home & Kitchen > Lighting > Desk Lamps > LED Desk Lamps",
            "fulfillment_channel": "platform",
        },
    }


async def count_out(
    bootstrap: str, topic: str, tenant_id: str, expected: int, timeout: float = 90
) -> dict[str, dict[str, bytes]]:
    """Reads the topic from the start; every record of the tenant by event id, with headers."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"count-{secrets.token_hex(4)}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        session_timeout_ms=2000,
        heartbeat_interval_ms=500,
    )
    await consumer.start()
    seen: dict[str, dict[str, bytes]] = {}
    deadline = time.monotonic() + timeout
    try:
        while len(seen) < expected and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500, max_records=5000)
            for records in batches.values():
                for record in records:
                    if record.key != tenant_id.encode():
                        continue

                    event_id = orjson.loads(record.value)["event_id"]
                    seen[event_id] = dict(record.headers)
    finally:
        await consumer.stop()
    return seen


async def test_5000_events_with_trace_headers_all_reach_kafka(
    http: httpx.AsyncClient, new_tenant: NewTenant, stack: Stack, kafka_bootstrap: str
) -> None:
    tenant = await new_tenant(scopes=["ingest:write"])
    events = [realistic_line(n) for n in range(5000)]
    assert 550 <= len(httpx.Request("POST", "/", json=events[0]).content) <= 800
    traceparent = f"00-{TRACE_ID}-00f067aa0ba902b7-01"
    response = await http.post(
        "/v1/events",
        json={"events": events},
        headers={**tenant.headers, "traceparent": traceparent},
    )
    assert response.status_code == 202, response.text
    assert response.json() == {"accepted": 5000, "duplicates": 0}

    topic = topic_for("order_line", stack.config.topic_prefix)
    seen = await count_out(kafka_bootstrap, topic, tenant.tenant_id, 5000)
    assert len(seen) == 5000
    assert set(seen) == {e["event_id"] for e in events}
    # The caller's trace continues through gateway, ingest and the relay into Kafka.
    assert all(TRACE_ID in headers["traceparent"].decode() for headers in seen.values())


async def test_relay_catches_up_when_the_broker_comes_back(
    fresh_database: FreshDatabase, minter: TokenMinter, tmp_path: Any
) -> None:
    database = await fresh_database("ingest")
    broker_port = free_port()
    port = free_port()
    settings = Settings.model_validate(
        {
            "DATABASE_URL": database,
            "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{broker_port}",
            "LODESTAR_TOPIC_PREFIX": f"outage{secrets.token_hex(3)}.",
            "port": port,
            "relay_poll_seconds": 0.2,
        }
    )
    app = create_app(settings)
    tenant = f"tn_{secrets.token_hex(4)}"
    headers = {"Authorization": f"Bearer {minter.mint(tenant, ['ingest:write'])}"}
    async with serve_app(app, "127.0.0.1", port):
        app.state.token_verifier = minter.verifier()
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            # The broker is down: pushes are still accepted and wait in the outbox.
            events = [realistic_line(n) for n in range(300)]
            response = await client.post("/v1/events", json={"events": events}, headers=headers)
            assert response.status_code == 202
            await asyncio.sleep(1.0)
            status = await client.get("/v1/events/outbox", headers=headers)
            assert status.json() == {"pending": 300}
            assert app.state.relay.counters.failed_batches >= 1

            broker = EmbeddedBroker(broker_port, tmp_path / "tansu.log")
            broker.start()
            try:
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline:
                    status = await client.get("/v1/events/outbox", headers=headers)
                    if status.json()["pending"] == 0:
                        break
                    await asyncio.sleep(0.2)
                assert status.json() == {"pending": 0}
                seen = await count_out(
                    f"127.0.0.1:{broker_port}",
                    topic_for("order_line", settings.topic_prefix),
                    tenant,
                    300,
                )
                assert set(seen) == {e["event_id"] for e in events}
            finally:
                await app.state.relay.stop()
                broker.stop()
