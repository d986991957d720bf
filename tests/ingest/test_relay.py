"""The outbox relay: every accepted event reaches Kafka, keyed by tenant, with its trace,
even after a broker outage; sent rows and old idempotency keys are cleaned up."""

from __future__ import annotations

import asyncio
import secrets
from collections import Counter
from pathlib import Path
from typing import Any

import asyncpg
import orjson

from devstack.embedded import EmbeddedBroker, free_port
from services.ingest.outbox.repository import RELAY_LOCK, OutboxRepository
from shared.db import asyncpg_dsn
from shared.events import PAYLOAD_MODELS, EventMessage
from tests.conftest import FreshDatabase, schema_connection
from tests.ingest.conftest import (
    IngestService,
    MakeIngest,
    order_line,
    read_topic,
    realistic_line,
    wait_until,
)
from tests.unreachable import refusing_port

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"
SOURCE = {"platform": "shopify", "store_id": "acme-de", "marketplace": "DE"}


def one_of_each() -> list[dict[str, Any]]:
    """Events of several types, each with optional fields set, as a client sends them."""

    def event(event_id: str, kind: str, payload: dict[str, Any]) -> dict[str, Any]:
        return {
            "event_id": event_id,
            "type": kind,
            "version": 2,
            "source": SOURCE,
            "occurred_at": "2026-03-01T07:15:00+01:00",
            "payload": payload,
        }

    eur = "EUR"
    return [
        order_line("ol-1", category="Lamps", discount={"amount": "1.50", "currency": "USD"}),
        event(
            "rf-1",
            "refund",
            {
                "order_id": "o-1",
                "amount": {"amount": "12.30", "currency": eur},
                "refunded_at": "2026-03-02T10:00:00Z",
                "reason": "damaged",
            },
        ),
        event(
            "fee-1",
            "fee",
            {
                "fee_type": "commission",
                "amount": {"amount": "0.99", "currency": eur},
                "charged_at": "2026-03-02T10:00:00Z",
            },
        ),
        event(
            "tr-1",
            "traffic",
            {"date": "2026-03-02", "sku": "LAMP-01", "sessions": 40, "page_views": 55},
        ),
        event(
            "fx-1",
            "fx_rate",
            {"date": "2026-03-02", "base": "EUR", "quote": "USD", "rate": "1.0842"},
        ),
    ]


async def test_events_reach_their_topics_keyed_by_tenant_with_the_pushed_payload(
    ingest: IngestService,
) -> None:
    tenant = f"tn_{secrets.token_hex(4)}"
    events = one_of_each()
    response = await ingest.push(tenant, events)
    assert response.status_code == 202, response.text
    assert response.json() == {"accepted": 5, "duplicates": 0}

    for sent in events:
        records = await read_topic(
            ingest.settings.kafka_bootstrap_servers, ingest.topic(sent["type"]), 1
        )
        assert len(records) == 1, sent["type"]
        record = records[0]
        assert record.key == tenant.encode()
        message = EventMessage.model_validate_json(record.value)
        assert message.tenant_id == tenant
        assert (message.event_id, message.type, message.version) == (
            sent["event_id"],
            sent["type"],
            sent["version"],
        )
        assert message.source.model_dump() == sent["source"]
        assert message.occurred_at.isoformat().replace("+00:00", "Z") == sent["occurred_at"]
        assert message.ingested_at.tzinfo is not None
        # The payload arrives as pushed (after validation), read back by its own model.
        assert message.typed_payload() == PAYLOAD_MODELS[sent["type"]].model_validate(
            sent["payload"]
        )
        assert set(message.payload) == set(sent["payload"])
    assert ingest.relay.counters.published == 5
    assert await ingest.relay.backlog() == 0


async def test_tenant_comes_from_the_token_not_from_the_events(ingest: IngestService) -> None:
    tenant, other = f"tn_{secrets.token_hex(4)}", f"tn_{secrets.token_hex(4)}"
    smuggled = {**order_line("sm-1"), "tenant_id": other}
    response = await ingest.push(tenant, [smuggled])
    assert response.status_code == 202, response.text
    records = await read_topic(
        ingest.settings.kafka_bootstrap_servers, ingest.topic("order_line"), 1
    )
    assert [r.key for r in records] == [tenant.encode()]
    assert orjson.loads(records[0].value)["tenant_id"] == tenant
    assert await ingest.outbox_rows(tenant) == 1
    assert await ingest.outbox_rows(other) == 0


async def test_5000_events_with_trace_headers_all_reach_kafka(ingest: IngestService) -> None:
    tenant = f"tn_{secrets.token_hex(4)}"
    events = [realistic_line(n) for n in range(5000)]
    assert 550 <= len(orjson.dumps(events[0])) <= 800
    response = await ingest.push(
        tenant, events, traceparent=TRACEPARENT, tracestate="vendor=opaque"
    )
    assert response.status_code == 202, response.text
    assert response.json() == {"accepted": 5000, "duplicates": 0}

    records = await read_topic(
        ingest.settings.kafka_bootstrap_servers, ingest.topic("order_line"), 5000
    )
    # Every record, none twice, none lost at the tail of a record batch.
    ids = Counter(orjson.loads(r.value)["event_id"] for r in records)
    assert len(records) == 5000
    assert set(ids) == {e["event_id"] for e in events}
    assert {r.key for r in records} == {tenant.encode()}
    for record in records:
        headers = dict(record.headers)
        # The caller's trace continues through the push and the relay into Kafka.
        assert headers["traceparent"].decode().split("-")[1] == TRACE_ID
        assert headers["tracestate"] == b"vendor=opaque"
    assert ingest.relay.counters.published == 5000


async def test_a_push_wakes_the_relay_without_waiting_for_the_poll(
    make_ingest: MakeIngest,
) -> None:
    tenant = f"tn_{secrets.token_hex(4)}"
    # Polling every minute: only the NOTIFY of the push's commit can wake the relay in time.
    async with make_ingest(relay_poll_seconds=60) as ingest:

        async def connected() -> bool:
            return ingest.relay.connected

        await wait_until(connected, 10, "the relay to connect")
        await asyncio.sleep(0.2)  # past its first, empty pass
        response = await ingest.push(tenant, [order_line("w1"), order_line("w2")])
        assert response.status_code == 202

        async def published() -> bool:
            return ingest.relay.counters.published == 2

        await wait_until(published, 5, "the relay to be woken")
        records = await read_topic(
            ingest.settings.kafka_bootstrap_servers, ingest.topic("order_line"), 2
        )
        assert sorted(orjson.loads(r.value)["event_id"] for r in records) == ["w1", "w2"]


async def test_relay_catches_up_when_the_broker_comes_back(
    make_ingest: MakeIngest, tmp_path: Path
) -> None:
    broker_port = free_port()
    bootstrap = f"127.0.0.1:{broker_port}"
    tenant = f"tn_{secrets.token_hex(4)}"
    async with make_ingest(KAFKA_BOOTSTRAP_SERVERS=bootstrap) as ingest:
        # Nothing listens on the broker's port: pushes are still accepted and wait.
        events = [realistic_line(n) for n in range(300)]
        response = await ingest.push(tenant, events)
        assert response.status_code == 202
        assert response.json() == {"accepted": 300, "duplicates": 0}
        more = await ingest.push(tenant, [order_line("late-1"), order_line("late-2")])
        assert more.json() == {"accepted": 2, "duplicates": 0}

        async def relay_failed() -> bool:
            return ingest.relay.counters.failed_batches >= 2

        await wait_until(relay_failed, 15, "the relay to try and fail")
        assert await ingest.pending(tenant) == 302
        assert ingest.relay.counters.published == 0
        assert "KafkaConnectionError" in (ingest.relay.counters.last_error or "")

        broker = EmbeddedBroker(broker_port, tmp_path / "tansu.log")
        await asyncio.to_thread(broker.start)
        try:

            async def drained() -> bool:
                return await ingest.pending(tenant) == 0

            await wait_until(drained, 30, "the outbox to drain")
            records = await read_topic(bootstrap, ingest.topic("order_line"), 302)
            ids = [orjson.loads(r.value)["event_id"] for r in records]
            assert sorted(ids) == sorted([e["event_id"] for e in events] + ["late-1", "late-2"])
            assert ingest.relay.counters.published == 302
        finally:
            await ingest.relay.stop()
            await asyncio.to_thread(broker.stop)


async def test_relay_stops_with_the_service(make_ingest: MakeIngest) -> None:
    async with make_ingest() as ingest:
        assert ingest.relay.running
        relay = ingest.relay
    assert not relay.running


async def test_a_relay_woken_as_it_is_stopped_still_stops(make_ingest: MakeIngest) -> None:
    async with make_ingest() as ingest:
        relay = ingest.relay

        async def idle() -> bool:
            return relay.connected

        await wait_until(idle, 30, "the relay to connect")
        await asyncio.sleep(0.3)
        # A push's notification and the service's shutdown in the same moment: the stop
        # was once dropped, and the service waited for its relay for ever.
        relay._notified()
        await asyncio.wait_for(relay.stop(), 10)
        assert not relay.running


async def test_sent_rows_and_expired_idempotency_keys_are_cleaned_up(
    make_ingest: MakeIngest,
) -> None:
    tenant = f"tn_{secrets.token_hex(4)}"
    async with make_ingest(
        outbox_retention_hours=0, idempotency_retention_hours=0, cleanup_interval_seconds=0.1
    ) as ingest:
        body = [order_line("c-1"), order_line("c-2")]
        first = await ingest.push(tenant, body, **{"Idempotency-Key": "cleanup-1"})
        assert first.json() == {"accepted": 2, "duplicates": 0}

        async def cleaned() -> bool:
            rows = await ingest.outbox_rows(tenant)
            keys = await ingest.sql("SELECT count(*) FROM idempotency_keys")
            return rows == 0 and keys == 0

        await wait_until(cleaned, 15, "the cleanup")
        assert ingest.relay.counters.published == 2
        # The key was forgotten, the events were not: the same push is now duplicates.
        again = await ingest.push(tenant, body, **{"Idempotency-Key": "cleanup-1"})
        assert again.json() == {"accepted": 0, "duplicates": 2}


async def test_outbox_status_counts_only_the_callers_pending_events(
    make_ingest: MakeIngest,
) -> None:
    tenant, other = f"tn_{secrets.token_hex(4)}", f"tn_{secrets.token_hex(4)}"
    with refusing_port() as down:
        async with make_ingest(KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{down}") as ingest:
            await ingest.push(tenant, [order_line("p-1"), order_line("p-2")])
            await ingest.push(other, [order_line("p-1")])
            assert await ingest.pending(tenant) == 2
            assert await ingest.pending(other) == 1
            assert await ingest.relay.backlog() == 3
            refused = await ingest.client.get(
                "/v1/events/outbox", headers=ingest.headers(tenant, ("kpi:read",))
            )
            assert refused.status_code == 403
            assert refused.json()["error"] == "insufficient_scope"


async def test_a_restart_after_a_forgetful_broker_publishes_the_sent_events_again(
    make_ingest: MakeIngest, kafka_bootstrap: str
) -> None:
    tenant = f"tn_{secrets.token_hex(4)}"
    async with make_ingest() as first:
        await first.push(tenant, [order_line("r-1"), order_line("r-2")])
        await wait_until(lambda: _published(first, 2), 15, "the first publication")
        database, prefix = first.database_url, first.settings.topic_prefix
    # The embedded broker keeps no log: its launcher starts ingest with republishing on.
    async with make_ingest(
        DATABASE_URL=database, LODESTAR_TOPIC_PREFIX=prefix, republish_on_start=True
    ) as again:
        await wait_until(lambda: _published(again, 2), 15, "the republication")
        assert await again.sql("SELECT count(*) FROM outbox WHERE sent_at IS NULL") == 0
        records = await read_topic(kafka_bootstrap, again.topic("order_line"), 4)
    # Twice each; consumers keep one (same event id and version).
    ids = Counter(orjson.loads(r.value or b"{}")["event_id"] for r in records)
    assert ids == {"r-1": 2, "r-2": 2}
    # Without the setting (a durable Kafka) nothing is sent twice.
    async with make_ingest(DATABASE_URL=database, LODESTAR_TOPIC_PREFIX=prefix) as third:
        await asyncio.sleep(0.5)
        assert third.relay.counters.published == 0


async def test_a_restart_with_a_new_broker_publishes_the_sent_events_once(
    make_ingest: MakeIngest, tmp_path: Path
) -> None:
    """``make run`` again: a new embedded broker, and an ingest that sent events to the
    last one. Asked to republish at its start, and finding the broker without its log,
    the relay sends each event once more, not twice."""
    tenant = f"tn_{secrets.token_hex(4)}"
    async with make_ingest() as first:
        await first.push(tenant, [order_line("s-1"), order_line("s-2")])
        await wait_until(lambda: _published(first, 2), 15, "the first publication")
        database, prefix = first.database_url, first.settings.topic_prefix
    broker_port = free_port()
    bootstrap = f"127.0.0.1:{broker_port}"
    broker = EmbeddedBroker(broker_port, tmp_path / "tansu.log")
    await asyncio.to_thread(broker.start)
    try:
        async with make_ingest(
            DATABASE_URL=database,
            LODESTAR_TOPIC_PREFIX=prefix,
            KAFKA_BOOTSTRAP_SERVERS=bootstrap,
            republish_on_start=True,
        ) as again:
            await wait_until(lambda: _published(again, 2), 15, "the republication")
            records = await read_topic(bootstrap, again.topic("order_line"), 2)
            assert again.relay.counters.published == 2
            ids = Counter(orjson.loads(r.value or b"{}")["event_id"] for r in records)
            assert ids == {"s-1": 1, "s-2": 1}
    finally:
        await asyncio.to_thread(broker.stop)


async def _published(service: IngestService, count: int) -> bool:
    return service.relay.counters.published >= count


async def test_one_relay_at_a_time_claims_and_the_others_wait(ingest: IngestService) -> None:
    tenant = f"t-{secrets.token_hex(3)}"
    # Another replica's relay, mid-batch: it holds the claim until its transaction ends.
    other = await asyncpg.connect(
        asyncpg_dsn(ingest.database_url), server_settings={"search_path": "ingest"}
    )
    try:
        transaction = other.transaction()
        await transaction.start()
        await other.execute("SELECT pg_advisory_xact_lock($1)", RELAY_LOCK)
        response = await ingest.push(tenant, [order_line("held-1"), order_line("held-2")])
        assert response.status_code == 202, response.text
        await asyncio.sleep(1.0)  # five of this relay's polls: none may claim
        assert await ingest.pending(tenant) == 2
        await transaction.commit()
    finally:
        await other.close()

    async def all_sent() -> bool:
        return await ingest.pending(tenant) == 0

    await wait_until(all_sent, what="the rows published once the claim is free")


async def test_a_broker_that_lost_its_log_gets_the_sent_events_again(
    make_ingest: MakeIngest, tmp_path: Path
) -> None:
    """The embedded broker restarted while ingest kept running: what it was sent is
    published to it again, though no push came since and ingest did not restart."""
    broker_port = free_port()
    bootstrap = f"127.0.0.1:{broker_port}"
    tenant = f"tn_{secrets.token_hex(4)}"
    broker = EmbeddedBroker(broker_port, tmp_path / "tansu.log")
    await asyncio.to_thread(broker.start)
    try:
        async with make_ingest(
            KAFKA_BOOTSTRAP_SERVERS=bootstrap, republish_on_start=True, broker_check_seconds=0.5
        ) as ingest:
            await ingest.push(tenant, [order_line("b-1"), order_line("b-2")])
            await wait_until(lambda: _published(ingest, 2), 30, "the first publication")
            await asyncio.to_thread(broker.stop)
            broker = EmbeddedBroker(broker_port, tmp_path / "tansu-again.log")
            await asyncio.to_thread(broker.start)
            await wait_until(lambda: _published(ingest, 4), 30, "the republication")
            records = await read_topic(bootstrap, ingest.topic("order_line"), 2)
            ids = sorted(orjson.loads(r.value or b"{}")["event_id"] for r in records)
            assert ids == ["b-1", "b-2"]
            # The same broker, still holding its log: nothing is sent twice more.
            await asyncio.sleep(1.5)
            assert ingest.relay.counters.published == 4
            await ingest.relay.stop()
    finally:
        await asyncio.to_thread(broker.stop)


async def test_events_sent_again_wait_behind_fresh_ones_and_are_not_pending(
    fresh_database: FreshDatabase,
) -> None:
    url = await fresh_database("ingest")
    async with schema_connection(url, "ingest") as conn, conn.transaction():
        outbox = OutboxRepository(conn)

        def row(event_id: str) -> tuple[Any, ...]:
            return ("t1", event_id, 1, "fee", "fee", b"{}", None, None)

        await outbox.add([row("old-1"), row("old-2")])
        await outbox.mark_sent([r["id"] for r in await outbox.claim(10)])
        # The broker lost its log: both are queued again; then a fresh push.
        assert await outbox.queue_again_since(24) == 2
        assert await outbox.queue_again_since(24) == 0
        await outbox.add([row("fresh")])
        assert await outbox.pending() == 1
        claimed = await outbox.claim(2)
        events = [
            await conn.fetchval("SELECT event_id FROM outbox WHERE id = $1", r["id"])
            for r in claimed
        ]
        # The newest sent first: the last sent before the log was lost are the likeliest
        # to have been unread, and must not wait behind a day of events applied already.
        assert events == ["fresh", "old-2"]
        await outbox.mark_sent([r["id"] for r in claimed])
        assert [r["id"] for r in await outbox.claim(10)] == [
            await conn.fetchval("SELECT id FROM outbox WHERE event_id = 'old-1'")
        ]
        assert await outbox.pending() == 0
