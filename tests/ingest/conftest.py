"""An ingest service of a test's own: its own database, topic prefix and port.

Tests that read Kafka or the outbox use it, so no other test's messages or relay
can be seen; tests of the public contract go through the gateway (``stack``).
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import ConsumerRecord
from fastapi import FastAPI

from devstack.embedded import free_port
from services.ingest.app import create_app
from services.ingest.config import Settings
from services.ingest.outbox.relay import OutboxRelay
from shared.db import asyncpg_dsn
from shared.events import topic_for
from tests.conftest import FreshDatabase, TokenMinter, serve_app


def order_line(event_id: str, version: int = 1, **payload: Any) -> dict[str, Any]:
    """A valid order line; ``payload`` overrides or adds payload fields."""
    event: dict[str, Any] = {
        "event_id": event_id,
        "type": "order_line",
        "version": version,
        "source": {"platform": "amazon", "store_id": "acme-us", "marketplace": "US"},
        "occurred_at": "2026-03-01T07:15:00Z",
        "payload": {
            "order_id": f"o-{event_id}",
            "line_id": "1",
            "sku": "LAMP-01",
            "quantity": 1,
            "unit_price": {"amount": "9.99", "currency": "USD"},
            "status": "pending",
            "purchased_at": "2026-03-01T07:15:00Z",
        },
    }
    event["payload"].update(payload)
    return event


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


async def wait_until(check: Callable[[], Any], timeout: float = 30, what: str = "") -> None:
    """Polls an async ``check`` until it returns true; fails the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or check}")
        await asyncio.sleep(0.05)


async def read_topic(
    bootstrap: str, topic: str, expected: int, timeout: float = 60
) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record of ``topic`` from the start of each partition, once ``expected``
    have arrived (or the timeout passed); read without a group, so nothing is committed."""
    deadline = time.monotonic() + timeout
    consumer, partitions = await _consumer_that_sees(bootstrap, topic, deadline)
    records: list[ConsumerRecord[bytes, bytes]] = []
    try:
        assignment = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(assignment)
        await consumer.seek_to_beginning(*assignment)
        while len(records) < expected and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=200, max_records=5000)
            for batch in batches.values():
                records.extend(batch)
        # A moment more, so that a record too many would be seen too.
        for batch in (await consumer.getmany(timeout_ms=200)).values():
            records.extend(batch)
    finally:
        await consumer.stop()
    return records


async def _consumer_that_sees(
    bootstrap: str, topic: str, deadline: float
) -> tuple[AIOKafkaConsumer, set[int]]:
    """A started consumer whose metadata holds ``topic``, and the topic's partitions.

    The relay creates its topics when it connects, which may be just after a push. A
    consumer refreshes its own metadata only every few minutes (``topics()`` does not
    update it), and one stopped right after its start may raise CancelledError from
    aiokafka's internals: the topic is waited for with the admin client, whose every
    listing is fresh, and the consumer starts once it exists."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        while topic not in await admin.list_topics():
            assert time.monotonic() < deadline, f"no topic {topic}"
            await asyncio.sleep(0.2)
    finally:
        await admin.close()
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    partitions = consumer.partitions_for_topic(topic)
    if not partitions:
        await consumer.stop()
        raise AssertionError(f"topic {topic} is listed but has no partitions")
    return consumer, partitions


@dataclass
class IngestService:
    app: FastAPI
    settings: Settings
    client: httpx.AsyncClient
    minter: TokenMinter
    database_url: str

    @property
    def relay(self) -> OutboxRelay:
        relay: OutboxRelay = self.app.state.relay
        return relay

    def headers(self, tenant: str, scopes: tuple[str, ...] = ("ingest:write",)) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.minter.mint(tenant, list(scopes))}"}

    def topic(self, event_type: str) -> str:
        return topic_for(event_type, self.settings.topic_prefix)

    async def push(
        self, tenant: str, events: list[dict[str, Any]], **headers: str
    ) -> httpx.Response:
        return await self.client.post(
            "/v1/events", json={"events": events}, headers={**self.headers(tenant), **headers}
        )

    async def sql(self, query: str, *args: Any) -> Any:
        """One value from the ingest schema, read directly (sent rows included)."""
        conn = await asyncpg.connect(
            asyncpg_dsn(self.database_url), server_settings={"search_path": "ingest"}
        )
        try:
            return await conn.fetchval(query, *args)
        finally:
            await conn.close()

    async def outbox_rows(self, tenant: str) -> int:
        return int(await self.sql("SELECT count(*) FROM outbox WHERE tenant_id = $1", tenant))

    async def pending(self, tenant: str) -> int:
        response = await self.client.get("/v1/events/outbox", headers=self.headers(tenant))
        assert response.status_code == 200, response.text
        value: int = response.json()["pending"]
        return value


MakeIngest = Callable[..., AbstractAsyncContextManager[IngestService]]


@pytest.fixture
def make_ingest(
    fresh_database: FreshDatabase, kafka_bootstrap: str, minter: TokenMinter
) -> MakeIngest:
    """Starts an ingest service on a fresh database and topic prefix; ``overrides``
    are settings (by field name or environment alias), e.g. another broker."""

    @asynccontextmanager
    async def start(**overrides: Any) -> AsyncIterator[IngestService]:
        database = await fresh_database("ingest")
        port = free_port()
        settings = Settings.model_validate(
            {
                "DATABASE_URL": database,
                "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
                "LODESTAR_TOPIC_PREFIX": f"i{secrets.token_hex(4)}.",
                "port": port,
                "relay_poll_seconds": 0.2,
                **overrides,
            }
        )
        app = create_app(settings)
        async with serve_app(app, "127.0.0.1", port):
            app.state.token_verifier = minter.verifier()
            async with httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{port}", timeout=60.0
            ) as client:
                yield IngestService(app, settings, client, minter, database)

    return start


@pytest.fixture
async def ingest(make_ingest: MakeIngest) -> AsyncIterator[IngestService]:
    """An ingest service of this test's own, on the session's broker."""
    async with make_ingest() as service:
        yield service
