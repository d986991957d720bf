"""The metrics consumer: dead letters, idempotent redelivery, offsets after the commit."""

from __future__ import annotations

import asyncio
import logging.handlers
import os
import secrets
import signal
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import asyncpg
import httpx
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition

from devstack.embedded import EmbeddedBroker, free_port
from services.metrics.app import create_app
from services.metrics.config import Settings
from services.metrics.facts import consumer as consumer_module
from services.metrics.facts.consumer import Applied, FactConsumer, Parsed
from shared import kafka as kafka_module
from shared.db import Database, asyncpg_dsn
from shared.events import DEADLETTER_TOPIC, EventMessage, topic_for
from shared.kafka import ensure_topics
from tests.conftest import FreshDatabase, TokenMinter, broker_started_again, serve_app
from tests.unreachable import refusing_port


def envelope(tenant: str, event_id: str, kind: str, version: int, payload: dict[str, Any]) -> bytes:
    """An event as the relay publishes it."""
    return orjson.dumps(
        {
            "tenant_id": tenant,
            "event_id": event_id,
            "type": kind,
            "version": version,
            "source": {"platform": "amazon", "store_id": "s1", "marketplace": "US"},
            "occurred_at": "2026-05-05T18:00:00Z",
            "ingested_at": "2026-05-05T18:00:01Z",
            "payload": payload,
        }
    )


def message(tenant: str, event_id: str, quantity: int, version: int = 1) -> bytes:
    return envelope(
        tenant,
        event_id,
        "order_line",
        version,
        {
            "order_id": f"o-{event_id}",
            "line_id": "1",
            "sku": "SKU-1",
            "quantity": quantity,
            "unit_price": {"amount": "10.00", "currency": "USD"},
            "status": "shipped",
            "purchased_at": "2026-05-05T18:00:00Z",
        },
    )


async def produce(bootstrap: str, topic: str, values: list[tuple[bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False)
    await producer.start()
    try:
        for key, value in values:
            await producer.send_and_wait(topic, value=value, key=key)
    finally:
        await producer.stop()


async def wait_until(predicate: Any, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await predicate():
            return
        await asyncio.sleep(0.1)
    raise AssertionError("condition not reached in time")


async def gmv(client: httpx.AsyncClient, token: str) -> float | None:
    response = await client.get(
        "/v1/kpis",
        # In USD: no gateway runs here to tell the tenant's reporting currency.
        params={
            "metrics": "gmv",
            "from": "2026-05-01",
            "to": "2026-05-31",
            "grain": "total",
            "currency": "USD",
        },
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 200, response.text
    value: float | None = response.json()["rows"][0]["values"][0]["value"]
    return value


async def own_consumer(
    fresh_database: FreshDatabase, kafka_bootstrap: str, minter: TokenMinter
) -> tuple[Settings, str, str, str]:
    """Settings of a metrics service with a database, topics and group of its own; its
    order-line topic, a tenant and a kpi:read token of that tenant."""
    prefix = f"m{secrets.token_hex(3)}."
    settings = Settings.model_validate(
        {
            "DATABASE_URL": await fresh_database("metrics"),
            "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
            "LODESTAR_TOPIC_PREFIX": prefix,
            "consumer_group": f"metrics-{secrets.token_hex(3)}",
        }
    )
    tenant = f"tn_{secrets.token_hex(4)}"
    return settings, topic_for("order_line", prefix), tenant, minter.mint(tenant, ["kpi:read"])


@asynccontextmanager
async def serving(
    settings: Settings, minter: TokenMinter
) -> AsyncIterator[tuple[Any, httpx.AsyncClient]]:
    """The metrics service with these settings, and a client of it, until the block ends."""
    port = free_port()
    app = create_app(settings)
    async with (
        serve_app(app, "127.0.0.1", port),
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client,
    ):
        app.state.token_verifier = minter.verifier()
        yield app, client


async def dead_letters(
    bootstrap: str, settings: Settings, count: int, timeout: float = 20
) -> list[Any]:
    """The first ``count`` records of the dead-letter topic (fewer after ``timeout``)."""
    dead = AIOKafkaConsumer(
        settings.topic_prefix + DEADLETTER_TOPIC,
        bootstrap_servers=bootstrap,
        group_id=f"dlq-{secrets.token_hex(3)}",
        auto_offset_reset="earliest",
        session_timeout_ms=2000,
        heartbeat_interval_ms=500,
    )
    await dead.start()
    try:
        records: list[Any] = []
        deadline = time.monotonic() + timeout
        while len(records) < count and time.monotonic() < deadline:
            for batch in (await dead.getmany(timeout_ms=500)).values():
                records.extend(batch)
        return records
    finally:
        await dead.stop()


async def test_bad_records_are_dead_lettered_and_offsets_follow_the_commit(
    fresh_database: FreshDatabase, kafka_bootstrap: str, minter: TokenMinter
) -> None:
    settings, topic, tenant, token = await own_consumer(fresh_database, kafka_bootstrap, minter)
    key = tenant.encode()
    await produce(
        kafka_bootstrap,
        topic,
        [
            (key, b"{not json"),
            (key, message(tenant, "e1", 2)),
            (key, orjson.dumps({"tenant_id": tenant, "type": "order_line"})),
            (key, message(tenant, "e2", 1)),
        ],
    )
    said = logging.handlers.BufferingHandler(capacity=1000)
    logging.getLogger(consumer_module.__name__).addHandler(said)
    async with serving(settings, minter) as (app, client):

        async def applied_all() -> bool:
            # Counters move after the offsets are committed, a moment after the data.
            counted = app.state.consumer.counters.records >= 4
            return counted and await gmv(client, token) == 30.0

        await wait_until(applied_all)
        counters = app.state.consumer.counters
        assert counters.deadlettered == 2
        assert counters.applied == 2
        # Each said in a line of its tenant's, from the record's key.
        logging.getLogger(consumer_module.__name__).removeHandler(said)
        told = [r for r in said.buffer if r.getMessage() == "dead-lettered a record"]
        assert [getattr(r, "tenant", None) for r in told] == [tenant, tenant]
        # The same events again, and a lower version: nothing changes.
        await produce(
            kafka_bootstrap,
            topic,
            [(key, message(tenant, "e1", 2)), (key, message(tenant, "e2", 9, version=1))],
        )

        async def redelivered() -> bool:
            return bool(app.state.consumer.counters.records >= 6)

        await wait_until(redelivered)
        assert await gmv(client, token) == 30.0
        assert app.state.consumer.counters.applied == 2

    records = await dead_letters(kafka_bootstrap, settings, 2)
    assert [r.value for r in records] == [
        b"{not json",
        orjson.dumps({"tenant_id": tenant, "type": "order_line"}),
    ]
    headers = dict(records[0].headers)
    assert headers["source_topic"].decode() == topic
    assert headers["reason"]
    assert b"event_id" in dict(records[1].headers)["reason"]

    # A new consumer in the same group starts after the committed offsets.
    async with serving(settings, minter) as (app, _):
        await produce(kafka_bootstrap, topic, [(key, message(tenant, "e3", 1))])

        async def third() -> bool:
            return bool(app.state.consumer.counters.records >= 1)

        await wait_until(third)
        await asyncio.sleep(0.5)
        assert app.state.consumer.counters.records == 1
        assert app.state.consumer.counters.applied == 1


async def first_apply_held(
    fresh_database: FreshDatabase,
    kafka_bootstrap: str,
    minter: TokenMinter,
    monkeypatch: pytest.MonkeyPatch,
    arriving: list[tuple[str, int, int]],
    fail: bool,
) -> tuple[list[int], float | None, int]:
    """Pushes e1 (quantity 1, partition 0) and holds the apply of its batch while the
    ``arriving`` events (id, quantity, partition) come, each in a fetch of its own; then
    lets it go on, or fail once when ``fail``. Once every event is applied: the sizes of
    the batches applied (or tried), the GMV and the records the consumer counted."""
    settings, topic, tenant, token = await own_consumer(fresh_database, kafka_bootstrap, minter)
    await ensure_topics(kafka_bootstrap, [topic])
    entered, resume = asyncio.Event(), asyncio.Event()
    batch_sizes: list[int] = []
    applying = consumer_module.apply_messages

    async def held_first(db: Any, messages: list[EventMessage], erased: Any = ()) -> Applied:
        batch_sizes.append(len(messages))
        if not entered.is_set():
            entered.set()
            await resume.wait()
            if fail:
                raise RuntimeError("the database went away")
        return await applying(db, messages, erased)

    monkeypatch.setattr(consumer_module, "apply_messages", held_first)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=False)
    await producer.start()
    try:
        await producer.send_and_wait(topic, message(tenant, "e1", 1), partition=0)
        async with serving(settings, minter) as (app, client):
            await asyncio.wait_for(entered.wait(), 30)
            for event_id, quantity, partition in arriving:
                await producer.send_and_wait(
                    topic, message(tenant, event_id, quantity), partition=partition
                )
                await asyncio.sleep(0.3)
            resume.set()

            async def applied_all() -> bool:
                return app.state.consumer.counters.applied >= 1 + len(arriving)

            await wait_until(applied_all)
            return batch_sizes, await gmv(client, token), app.state.consumer.counters.records
    finally:
        await producer.stop()


async def test_a_batch_that_failed_is_applied_again_and_nothing_after_it_is_lost(
    fresh_database: FreshDatabase,
    kafka_bootstrap: str,
    minter: TokenMinter,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Read ahead while the batch fails: in partitions the failed batch did not read
    # from, and after it in its own.
    arriving = [("e2", 2, 1), ("e3", 4, 2), ("e4", 8, 0)]
    _, value, records = await first_apply_held(
        fresh_database, kafka_bootstrap, minter, monkeypatch, arriving, fail=True
    )
    assert value == 150.0
    assert records == 4


async def test_events_that_arrive_while_a_batch_is_applied_are_applied_together_next(
    fresh_database: FreshDatabase,
    kafka_bootstrap: str,
    minter: TokenMinter,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    arriving = [("e2", 2, 1), ("e3", 3, 0), ("e4", 4, 2)]
    batch_sizes, value, _ = await first_apply_held(
        fresh_database, kafka_bootstrap, minter, monkeypatch, arriving, fail=False
    )
    assert batch_sizes == [1, 3]
    assert value == 100.0


async def test_a_read_ahead_stopped_midway_returns_what_it_had_read(
    fresh_database: FreshDatabase, kafka_bootstrap: str, minter: TokenMinter
) -> None:
    """A read ahead that is stopped while a batch is applied gives back the records it
    took: they are read again from there, not skipped."""
    settings, topic, tenant, _ = await own_consumer(fresh_database, kafka_bootstrap, minter)
    await ensure_topics(kafka_bootstrap, [topic])
    key = tenant.encode()
    await produce(kafka_bootstrap, topic, [(key, message(tenant, "e1", 1))])
    reader = FactConsumer(Database(settings.database_url, "metrics"), settings)
    try:
        consumer = await reader._connect()
        first = None
        deadline = time.monotonic() + 30
        while first is None and time.monotonic() < deadline:
            first = await reader._fetch(consumer)
        assert first is not None and len(first.parsed.good) == 1
        # A batch is being applied and does not end.
        applying = asyncio.Event()
        ahead = consumer_module._ReadAhead(partial(reader._fetch, consumer, applying))
        later = [(key, message(tenant, "e2", 2)), (key, message(tenant, "e3", 3))]
        await produce(kafka_bootstrap, topic, later)
        await asyncio.sleep(1.5)
        assert not ahead.task.done(), "a read ahead stops taking records before the apply ends"
        dropped = await ahead.stopped()
        assert dropped is not None
        assert [record.value for record, _ in dropped.parsed.good] == [v for _, v in later]
        [(partition, offset)] = dropped.first.items()
        assert offset == first.first[partition] + 1
    finally:
        await reader.stop()
        await reader.db.dispose()


async def test_an_event_that_fails_twice_is_dead_lettered_and_the_rest_applied(
    fresh_database: FreshDatabase,
    kafka_bootstrap: str,
    minter: TokenMinter,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings, topic, tenant, token = await own_consumer(fresh_database, kafka_bootstrap, minter)
    applying = consumer_module.apply_messages
    attempts: list[int] = []

    async def refuses_bad(db: Any, messages: list[Any], erased: Any = ()) -> Applied:
        attempts.append(len(messages))
        if any(m.event_id == "bad" for m in messages):
            raise asyncpg.exceptions.DataError("value out of range for the column")
        return await applying(db, messages, erased)

    monkeypatch.setattr(consumer_module, "apply_messages", refuses_bad)
    key = tenant.encode()
    await produce(
        kafka_bootstrap,
        topic,
        [
            (key, message(tenant, "e1", 1)),
            (key, message(tenant, "bad", 5)),
            (key, message(tenant, "e3", 2)),
        ],
    )
    async with serving(settings, minter) as (app, client):

        async def moved_on() -> bool:
            return app.state.consumer.counters.records >= 3

        await wait_until(moved_on)
        assert await gmv(client, token) == 30.0
        counters = app.state.consumer.counters
        assert (counters.applied, counters.deadlettered) == (2, 1)
        # The whole batch, again, then one event at a time.
        assert attempts[:2] == [3, 3] and sorted(attempts[2:]) == [1, 1, 1]

    records = await dead_letters(kafka_bootstrap, settings, 1)
    assert [r.value for r in records] == [message(tenant, "bad", 5)]
    assert b"DataError" in dict(records[0].headers)["reason"]


async def test_events_are_not_dead_lettered_when_the_fault_is_not_theirs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tenant = f"tn_{secrets.token_hex(4)}"
    good = [
        (SimpleNamespace(offset=n), EventMessage.model_validate_json(message(tenant, f"e{n}", 1)))
        for n in range(3)
    ]
    parsed = Parsed(good, [])
    facts = FactConsumer(None, None)  # type: ignore[arg-type]

    def failing_with(fault: Exception, only: str | None = None) -> Any:
        async def apply(db: Any, messages: list[EventMessage], erased: Any = ()) -> Applied:
            if only is None or messages[0].event_id == only:
                raise fault
            return Applied(1)

        return apply

    # Every event fails the same way: a fault of the code or the schema, not of events.
    monkeypatch.setattr(consumer_module, "apply_messages", failing_with(ValueError("bug")))
    assert await facts._apply_one_by_one(parsed) is None
    # The database went away meanwhile.
    monkeypatch.setattr(consumer_module, "apply_messages", failing_with(OSError(), "e1"))
    assert await facts._apply_one_by_one(parsed) is None
    # One event at fault.
    monkeypatch.setattr(consumer_module, "apply_messages", failing_with(ValueError("x"), "e1"))
    applied, deferred, faulty = await facts._apply_one_by_one(parsed) or (0, None, [])
    assert applied == 2 and [record.offset for record, _ in faulty] == [1] and not deferred
    # Every event refused for its own values (a key too long for an index, a value out
    # of range), a lone one too: theirs, dead-lettered rather than retried for ever.
    for refusal in (
        asyncpg.exceptions.ProgramLimitExceededError("index row size 3128 exceeds maximum 2704"),
        asyncpg.exceptions.NumericValueOutOfRangeError("numeric field overflow"),
    ):
        monkeypatch.setattr(consumer_module, "apply_messages", failing_with(refusal))
        for batch in (parsed, Parsed(good[:1], [])):
            applied, _, faulty = await facts._apply_one_by_one(batch) or (-1, None, [])
            assert applied == 0 and len(faulty) == len(batch.good), refusal


def test_a_failed_batch_read_again_is_known_though_other_partitions_joined_it() -> None:
    """While events keep coming, the batch read again after a failure holds the failed
    one's records and more from other partitions: it is isolated record by record all
    the same (a bad record was retried whole for minutes, holding up every tenant)."""
    facts = FactConsumer(None, None)  # type: ignore[arg-type]
    lines, fees = TopicPartition("lines", 0), TopicPartition("fees", 2)
    assert not facts._read_again_from_failed({lines: 5})
    facts._failed_from = {lines: 5}
    assert facts._read_again_from_failed({lines: 5})
    assert facts._read_again_from_failed({lines: 5, fees: 9})
    assert not facts._read_again_from_failed({lines: 6, fees: 9})
    assert not facts._read_again_from_failed({fees: 9})


def test_events_accepted_under_older_rules_are_read_as_they_are() -> None:
    """Ingest's rules grow stricter; what it accepted before is still in the outbox,
    the broker and the facts, and is applied, not dead-lettered."""

    def record(event_type: str, payload: dict[str, Any], marketplace: str = "US") -> Any:
        value = orjson.loads(message("tn_old", f"old-{event_type}", 1))
        value |= {"type": event_type, "payload": payload}
        value["source"]["marketplace"] = marketplace
        return SimpleNamespace(value=orjson.dumps(value))

    usd = {"currency": "USD"}
    older = [
        record("order_line", orjson.loads(message("t", "e", 1))["payload"], marketplace="ZZ"),
        record("cs_ticket", {"ticket_id": "t1", "opened_at": "2026-05-05T10:00:00Z",
                             "first_response_at": "2026-05-05T09:00:00Z"}),
        record("traffic", {"date": "2026-05-05", "sku": "S", "sessions": 2**40}),
        record("fee", {"fee_type": "other", "amount": {"amount": "1e-20", **usd},
                       "charged_at": "2026-05-05T10:00:00Z"}),
    ]  # fmt: skip
    parsed = consumer_module.parse_records(older)
    assert parsed.bad == [] and len(parsed.good) == 4
    broken = record("traffic", {"date": "2026-05-05", "sku": "S"})
    assert [reason for _, reason in consumer_module.parse_records([broken]).bad] == [
        "sessions: Field required"
    ]


def fee_message(tenant: str, event_id: str, amount: str) -> bytes:
    amount_of = {"amount": amount, "currency": "USD"}
    payload = {"fee_type": "commission", "amount": amount_of, "charged_at": "2026-05-05T18:00:00Z"}
    return envelope(tenant, event_id, "fee", 1, payload)


async def test_events_kept_already_are_skipped_before_they_are_parsed(
    fresh_database: FreshDatabase,
    kafka_bootstrap: str,
    minter: TokenMinter,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings, topic, tenant, token = await own_consumer(fresh_database, kafka_bootstrap, minter)
    fees = topic_for("fee", settings.topic_prefix)
    key = tenant.encode()
    first = [(key, message(tenant, "e1", 1)), (key, message(tenant, "e2", 2, version=3))]
    await produce(kafka_bootstrap, topic, first)
    await produce(kafka_bootstrap, fees, [(key, fee_message(tenant, "f1", "1.50"))])
    parsed: list[bytes] = []
    parse = consumer_module.parse_records

    def counting(records: list[Any]) -> Parsed:
        parsed.extend(r.value for r in records)
        return parse(records)

    monkeypatch.setattr(consumer_module, "parse_records", counting)
    async with serving(settings, minter) as (app, client):
        counters = app.state.consumer.counters

        async def applied_first() -> bool:
            return counters.records >= 3 and await gmv(client, token) == 30.0

        await wait_until(applied_first)
        parsed.clear()
        # As a broker that lost its log gets them again: the same versions, an older
        # one, the fee; then a newer version and a record that is no event at all.
        newer = message(tenant, "e1", 4, version=2)
        await produce(
            kafka_bootstrap,
            topic,
            [*first, (key, message(tenant, "e2", 7, version=2)), (key, newer), (key, b"[1]")],
        )
        await produce(kafka_bootstrap, fees, [(key, fee_message(tenant, "f1", "1.50"))])

        async def applied_again() -> bool:
            return counters.records >= 9 and await gmv(client, token) == 60.0

        await wait_until(applied_again)
        assert counters.repeats == 4
        assert parsed == [newer, b"[1]"]
        assert counters.deadlettered == 1


def apply_held_once(monkeypatch: pytest.MonkeyPatch) -> tuple[asyncio.Event, asyncio.Event]:
    """Holds the consumer's first apply of a batch: set when it has begun, and the event
    that lets it go on."""
    entered, resume = asyncio.Event(), asyncio.Event()
    applying = consumer_module.apply_messages

    async def held_once(db: Any, messages: list[EventMessage], erased: Any = ()) -> Applied:
        if not entered.is_set():
            entered.set()
            await resume.wait()
        return await applying(db, messages, erased)

    monkeypatch.setattr(consumer_module, "apply_messages", held_once)
    return entered, resume


async def test_a_broker_restarted_empty_is_read_on_by_the_same_consumer(
    fresh_database: FreshDatabase,
    minter: TokenMinter,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The broker dies and comes back empty while a batch is applied: the batch's commit
    # then finds the group has forgotten the consumer. A new consumer would wait for
    # the old one's session to time out (Tansu ignores LeaveGroup), so it carries on.
    port = free_port()
    broker = EmbeddedBroker(port, tmp_path / "first.log")
    bootstrap = broker.start()
    entered, resume = apply_held_once(monkeypatch)
    try:
        settings, topic, tenant, token = await own_consumer(fresh_database, bootstrap, minter)
        await ensure_topics(bootstrap, [topic])
        async with serving(settings, minter) as (app, client):
            fact_consumer: FactConsumer = app.state.consumer
            await produce(bootstrap, topic, [(tenant.encode(), message(tenant, "e1", 1))])
            await asyncio.wait_for(entered.wait(), 30)
            kafka_consumer = fact_consumer._consumer
            assert broker.pid is not None
            os.kill(broker.pid, signal.SIGKILL)
            broker.stop()
            broker = await broker_started_again(port, tmp_path / "second.log")
            resume.set()
            # As the relay does for a broker that lost its log: everything sent again.
            await ensure_topics(bootstrap, [topic])
            again = [(tenant.encode(), message(tenant, e, 1)) for e in ("e1", "e2")]
            await produce(bootstrap, topic, again)

            async def both_counted() -> bool:
                return await gmv(client, token) == 20.0

            await wait_until(both_counted)
            assert fact_consumer._consumer is kafka_consumer
    finally:
        broker.stop()


async def test_metrics_is_ready_only_while_its_consumer_reads_the_event_stream(
    fresh_database: FreshDatabase, kafka_bootstrap: str, minter: TokenMinter
) -> None:
    """Until its group assigns it partitions (seconds after a restart), every answer
    lacks what was pushed meanwhile: readiness says so rather than "ready"."""
    settings, _, _, _ = await own_consumer(fresh_database, kafka_bootstrap, minter)
    async with serving(settings, minter) as (app, client):
        deadline = time.monotonic() + 30
        while (ready := await client.get("/readyz")).status_code != 200:
            assert ready.json()["checks"]["consumer"] != "ok", ready.text
            assert time.monotonic() < deadline, ready.text
            await asyncio.sleep(0.2)
        assert ready.json()["checks"] == {"database": "ok", "broker": "ok", "consumer": "ok"}
        # A broker that restarted makes the group take the partitions back while the
        # consumer joins again, though it still holds its old assignment: not ready.
        membership = app.state.consumer._membership
        await membership.on_partitions_revoked(app.state.consumer._consumer.assignment())
        rejoining = await client.get("/readyz")
        assert rejoining.status_code == 503
        assert rejoining.json()["checks"]["consumer"].startswith("joining the event stream")
        await membership.on_partitions_assigned(app.state.consumer._consumer.assignment())
        assert (await client.get("/readyz")).status_code == 200
        # Before the group takes them back: the broker went away (its coordinator is
        # lost), or came back knowing no member.
        coordinator = app.state.consumer._consumer._coordinator
        coordinator.coordinator_dead()
        assert app.state.consumer.readiness().startswith("joining the event stream")
        await wait_until(lambda: _ready(client))
        coordinator.reset_generation()
        assert app.state.consumer.readiness().startswith("joining the event stream")
        await wait_until(lambda: _ready(client))
        # Batches failing again and again (a fault of the database or the code): the
        # answers lack every event since, and readiness says so.
        app.state.consumer._failed_in_a_row = 3
        failing = await client.get("/readyz")
        assert failing.status_code == 503
        assert failing.json()["checks"]["consumer"] == (
            "applying events failed 3 times in a row (see its log)"
        )
        app.state.consumer._failed_in_a_row = 0
        await app.state.consumer.stop()
        stopped = await client.get("/readyz")
    assert stopped.status_code == 503
    assert stopped.json()["status"] == "not_ready"
    assert stopped.json()["checks"]["consumer"] == "not running"


async def _ready(client: httpx.AsyncClient) -> bool:
    return (await client.get("/readyz")).status_code == 200


async def test_a_consumer_without_its_broker_is_not_ready(
    fresh_database: FreshDatabase, minter: TokenMinter
) -> None:
    with refusing_port() as down:
        settings, _, _, _ = await own_consumer(fresh_database, f"127.0.0.1:{down}", minter)
        consumer = FactConsumer(Database(settings.database_url, "metrics"), settings)
        assert consumer.readiness() == "not running"
        consumer.start()
        try:
            await asyncio.sleep(0.5)
            assert consumer.readiness() == "connecting to the broker"
        finally:
            await consumer.stop()
            await consumer.db.dispose()


async def test_a_tenant_being_rebucketed_holds_up_its_own_events_only(
    fresh_database: FreshDatabase, kafka_bootstrap: str, minter: TokenMinter
) -> None:
    """Setting a store's time zone rebuckets its history under the tenant's lock, for
    seconds in a large store: the batch went on with the other tenants' events, and the
    tenant's own (and a bad record behind them) waited for it, none lost, none twice."""
    settings, topic, busy, busy_token = await own_consumer(fresh_database, kafka_bootstrap, minter)
    other = f"tn_{secrets.token_hex(4)}"
    other_token = minter.mint(other, ["kpi:read"])
    await ensure_topics(kafka_bootstrap, [topic])
    rebucketing = await asyncpg.connect(asyncpg_dsn(settings.database_url))
    lock = rebucketing.transaction()
    await lock.start()
    await rebucketing.execute(
        "SELECT pg_advisory_xact_lock(hashtext('metrics.tenant:' || $1))", busy
    )
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=False)
    await producer.start()
    try:
        async with serving(settings, minter) as (app, client):
            # One partition, the held tenant's events first: the others come after them.
            for value in (
                message(busy, "b1", 1),
                message(other, "o1", 2),
                b"{not json",
                message(busy, "b2", 4),
                message(other, "o2", 8),
            ):
                await producer.send_and_wait(topic, value, partition=0)
            counters = app.state.consumer.counters

            async def others_applied() -> bool:
                return counters.applied >= 2 and await gmv(client, other_token) == 100.0

            await wait_until(others_applied)
            await asyncio.sleep(1)  # several reads again meanwhile
            assert not await gmv(client, busy_token)
            assert (counters.applied, counters.records, counters.deadlettered) == (2, 0, 0)
            await lock.rollback()

            async def all_applied() -> bool:
                return counters.records >= 5 and await gmv(client, busy_token) == 50.0

            await wait_until(all_applied)
            await asyncio.sleep(0.5)
            assert (counters.applied, counters.records, counters.deadlettered) == (4, 5, 1)
            assert await gmv(client, other_token) == 100.0
    finally:
        await producer.stop()
        await rebucketing.close()
    assert [r.value for r in await dead_letters(kafka_bootstrap, settings, 2, 5)] == [b"{not json"]


async def test_a_consumer_left_out_of_its_group_starts_again_and_reads_on(
    fresh_database: FreshDatabase,
    kafka_bootstrap: str,
    minter: TokenMinter,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """After a broker kill, aiokafka was seen to mark the group's coordinator dead and
    never look for it again: accepted events waited in the broker for good."""
    monkeypatch.setattr(kafka_module, "STUCK_OUT_OF_GROUP_SECONDS", 1.0)
    wedged = False
    monkeypatch.setattr(consumer_module, "in_its_group", lambda consumer: not wedged)
    settings, topic, tenant, token = await own_consumer(fresh_database, kafka_bootstrap, minter)
    async with serving(settings, minter) as (app, client):
        fact_consumer: FactConsumer = app.state.consumer
        await wait_until(lambda: _ready(client))
        first = fact_consumer._consumer
        wedged = True
        deadline = time.monotonic() + 30
        while fact_consumer._consumer in (first, None):
            assert time.monotonic() < deadline, "never started again"
            await asyncio.sleep(0.1)
        wedged = False
        await produce(kafka_bootstrap, topic, [(tenant.encode(), message(tenant, "w1", 1))])

        async def counted() -> bool:
            return await gmv(client, token) == 10.0

        await wait_until(counted)


async def test_a_batch_read_before_the_group_assigned_again_is_never_committed(
    fresh_database: FreshDatabase,
    kafka_bootstrap: str,
    minter: TokenMinter,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A batch read from a broker that then restarted empty was committed to the new one
    under the new assignment: its offsets, of the lost log, skipped what the relay sent
    again below them (accepted events never applied). Now it is read again from the
    group's committed offsets (the start of the log, where it has none)."""
    entered, resume = apply_held_once(monkeypatch)
    settings, topic, tenant, token = await own_consumer(fresh_database, kafka_bootstrap, minter)
    async with serving(settings, minter) as (app, client):
        fact_consumer: FactConsumer = app.state.consumer
        await produce(kafka_bootstrap, topic, [(tenant.encode(), message(tenant, "g1", 1))])
        await asyncio.wait_for(entered.wait(), 30)
        kafka_consumer = fact_consumer._consumer
        assert kafka_consumer is not None
        partitions = kafka_consumer.assignment()
        # The group takes the partitions back while the batch is applied (a broker that
        # restarted empty took a commit made then), and gives them again later.
        membership = fact_consumer._membership
        await membership.on_partitions_revoked(partitions)
        resume.set()

        async def given_up() -> bool:
            return fact_consumer.counters.batches >= 1

        await wait_until(given_up)
        assert [await kafka_consumer.committed(p) for p in partitions] == [None] * len(partitions)
        await membership.on_partitions_assigned(partitions)

        async def read_again() -> bool:
            return fact_consumer.counters.repeats >= 1

        await wait_until(read_again)
        assert await gmv(client, token) == 10.0

        async def committed_after_it() -> bool:
            offsets = [await kafka_consumer.committed(p) for p in partitions]
            return any(offset is not None and offset > 0 for offset in offsets)

        await wait_until(committed_after_it)


def test_a_batch_links_each_push_once_however_many_events_it_holds() -> None:
    """Links were one per record of the first 32: a batch of 810 events from one push
    linked it 32 times, and the pushes behind those records not at all."""

    def record(offset: int, trace_id: int | None) -> ConsumerRecord[bytes, bytes]:
        headers = (
            []
            if trace_id is None
            else [("traceparent", f"00-{trace_id:032x}-{1:016x}-01".encode())]
        )
        return ConsumerRecord("t", 0, offset, 0, 0, None, b"{}", None, 0, 2, headers)

    records = [record(n, 1) for n in range(40)] + [record(40, None), record(41, 2), record(42, 1)]
    links = consumer_module.push_links(records)
    assert [link.context.trace_id for link in links] == [1, 2]
    many = consumer_module.push_links([record(n, n + 1) for n in range(300)])
    assert [link.context.trace_id for link in many] == list(range(1, consumer_module.MAX_LINKS + 1))
