"""The metrics consumer: canonical events from Kafka into facts and rollups.

At least once, idempotent: a batch is applied in one database transaction and its
offsets are committed only after that transaction commits, so a crash in between
redelivers events that then change nothing. A record that cannot be parsed goes to
the dead-letter topic with the reason, and the consumer goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Container, Coroutine, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from functools import partial
from typing import Any

import asyncpg
import orjson
from aiokafka import (
    AIOKafkaConsumer,
    AIOKafkaProducer,
    ConsumerRebalanceListener,
    ConsumerRecord,
    TopicPartition,
)
from aiokafka.errors import CommitFailedError, KafkaConnectionError, KafkaError
from opentelemetry import trace
from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError

from services.metrics.config import Settings
from services.metrics.facts.attachments import (
    ATTACHED_TYPES,
    attached_keys,
    move_order_attachments,
)
from services.metrics.facts.measures import Source
from services.metrics.facts.repository import FactRepository
from services.metrics.facts.zones import StoreZones, store_zones_for, tenants_rebucketing
from services.metrics.kpis.cache import bump_versions
from shared.db import CONNECTION_LOST, Database, hold_tenants, sqlstate
from shared.events import (
    DEADLETTER_TOPIC,
    PAYLOAD_MODELS,
    EventMessage,
    FxRate,
    OrderLine,
    Payload,
    Shipment,
    UnitCost,
    all_event_topics,
)
from shared.events import Source as EventSource
from shared.kafka import (
    COMMIT_SECONDS,
    GroupWatch,
    ensure_topics,
    in_its_group,
    make_consumer,
    make_producer,
    stop_client,
)
from shared.tasks import stop_task
from shared.telemetry import context_from_kafka, current_tenant
from shared.time import local_date
from shared.validation_context import STORED

log = logging.getLogger(__name__)
# A batch's fixed cost (staging, a dozen statements, the commit) is shared by its
# events: with a backlog, 5,000 at once apply about 20% faster than 2,000.
BATCH_RECORDS = 5000
# Records parsed between two looks at the batch being applied.
PARSE_CHUNK = 500
# How often a read ahead takes the records that arrived while a batch is applied.
GATHER_SECONDS = 0.01
tracer = trace.get_tracer("lodestar.metrics.consumer")

RETRY_SECONDS = 1.0
# How soon the events of a tenant whose store is being rebucketed are read again.
DEFERRED_SECONDS = 0.2


# The SDK keeps at most this many links on a span (OTEL_SPAN_LINK_COUNT_LIMIT's default).
MAX_LINKS = 128


def push_links(records: Sequence[ConsumerRecord[Any, Any]]) -> list[trace.Link]:
    """A link to each push whose events a batch applies, each once: a batch of a
    thousand events from a few pushes links those few, not its first records."""
    links: dict[bytes, trace.Link] = {}
    for record in records:
        parent = next((value for name, value in record.headers if name == "traceparent"), None)
        if parent is None or parent in links:
            continue
        context = trace.get_current_span(context_from_kafka(record.headers)).get_span_context()
        links[parent] = trace.Link(context)
        if len(links) == MAX_LINKS:
            break
    return list(links.values())


@dataclass
class ConsumerCounters:
    batches: int = 0
    records: int = 0
    applied: int = 0
    deadlettered: int = 0
    # Records of events already kept at their version or a later one, skipped unparsed.
    repeats: int = 0
    last_ingested_at: datetime | None = None


@dataclass(frozen=True)
class Parsed:
    good: list[tuple[ConsumerRecord[bytes, bytes], EventMessage]]
    bad: list[tuple[ConsumerRecord[bytes, bytes], str]]
    repeats: int = 0


@dataclass(frozen=True)
class Fetched:
    """A batch as the broker gave it, parsed."""

    batches: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]
    parsed: Parsed
    # The group's changes of the partitions when it was read (``_Membership.changes``).
    group_changes: int = 0

    @property
    def first(self) -> dict[TopicPartition, int]:
        """Where to read the batch again from."""
        return {tp: items[0].offset for tp, items in self.batches.items()}


class _Gathering:
    """The records of a batch read in several takes, and what parsing them gave."""

    def __init__(self) -> None:
        self.batches: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]] = {}
        self.good: list[tuple[ConsumerRecord[bytes, bytes], EventMessage]] = []
        self.bad: list[tuple[ConsumerRecord[bytes, bytes], str]] = []
        self.repeats = 0
        self.group_changes = 0

    @property
    def count(self) -> int:
        return sum(len(items) for items in self.batches.values())

    async def take(
        self, db: Database, batches: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]
    ) -> None:
        # Kept before anything is awaited: a read stopped midway still knows its offsets.
        for partition, items in batches.items():
            self.batches.setdefault(partition, []).extend(items)
        records = [record for items in batches.values() for record in items]
        if not records:
            return
        fresh = await without_repeats(db, records)
        self.repeats += len(records) - len(fresh)
        for start in range(0, len(fresh), PARSE_CHUNK):
            chunk = parse_records(fresh[start : start + PARSE_CHUNK])
            self.good += chunk.good
            self.bad += chunk.bad
            # Lets the batch being applied send its next statement meanwhile.
            await asyncio.sleep(0)

    def fetched(self) -> Fetched:
        return Fetched(self.batches, Parsed(self.good, self.bad, self.repeats), self.group_changes)


def parse_records(records: list[ConsumerRecord[bytes, bytes]]) -> Parsed:
    good, bad = [], []
    for record in records:
        try:
            message = EventMessage.model_validate_json(record.value or b"", context=STORED)
            message.typed_payload()
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first.get("loc", ()))
            bad.append((record, f"{where}: {first.get('msg')}" if where else str(first.get("msg"))))
            continue
        good.append((record, message))
    return Parsed(good, bad)


def _identity(record: ConsumerRecord[bytes, bytes]) -> tuple[str, str, int] | None:
    """(tenant, event id, version) of a record, read without validating it; None when
    it has none to read, and so must be parsed (and dead-lettered) in full."""
    try:
        data = orjson.loads(record.value or b"")
        identity = data["tenant_id"], data["event_id"], data["version"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return None
    tenant_id, event_id, version = identity
    if isinstance(tenant_id, str) and isinstance(event_id, str) and type(version) is int:
        return tenant_id, event_id, version
    return None


async def without_repeats(
    db: Database, records: list[ConsumerRecord[bytes, bytes]]
) -> list[ConsumerRecord[bytes, bytes]]:
    """The records not already kept at their version or a later one.

    An embedded broker keeps its log in memory only, so after it restarts ingest
    publishes the last day's events again (hundreds of thousands): applying each again
    changes nothing but took as long as applying it first, and held up every new event
    behind them for minutes. One lookup a batch skips them before they are parsed."""
    identities = [_identity(record) for record in records]
    known = {identity[:2] for identity in identities if identity is not None}
    if not known:
        return records
    async with db.raw_connection() as conn:
        kept = await FactRepository(conn).kept_versions(known)
    return [
        record
        for record, identity in zip(records, identities, strict=True)
        if identity is None or kept.get(identity[:2], 0) < identity[2]
    ]


def _latest(messages: list[EventMessage]) -> list[EventMessage]:
    latest: dict[tuple[str, str], EventMessage] = {}
    for message in messages:
        key = (message.tenant_id, message.event_id)
        kept = latest.get(key)
        if kept is None or message.version > kept.version:
            latest[key] = message
    return list(latest.values())


def _line_row(message: EventMessage, timezone: str | None = None) -> tuple[Any, ...]:
    line = message.typed_payload()
    assert isinstance(line, OrderLine)
    zero = Decimal(0)
    return (
        message.tenant_id,
        message.event_id,
        message.version,
        message.source.platform,
        message.source.store_id,
        message.source.marketplace,
        line.order_id,
        line.line_id,
        line.sku,
        line.category or "",
        line.status,
        line.quantity,
        line.unit_price.currency,
        line.unit_price.amount,
        line.shipping_price.amount if line.shipping_price else zero,
        line.discount.amount if line.discount else zero,
        line.item_tax.amount if line.item_tax else zero,
        line.purchased_at,
        local_date(line.purchased_at, message.source.marketplace, timezone),
    )


def _raw_row(message: EventMessage) -> tuple[Any, ...]:
    return (
        message.tenant_id,
        message.event_id,
        message.type,
        message.version,
        message.source.platform,
        message.source.store_id,
        message.source.marketplace,
        message.occurred_at,
        orjson.dumps(message.payload).decode(),
    )


@dataclass(frozen=True)
class Applied:
    """What applying events did: how many changed something, and the tenants whose
    events were left out, to be applied later, as a store of theirs is being rebucketed."""

    changed: int
    deferred: frozenset[str] = frozenset()


async def apply_messages(
    db: Database, messages: list[EventMessage], erased: Container[str] = ()
) -> Applied:
    """Applies parsed events in one transaction, but those of tenants being rebucketed."""
    candidates = _latest(messages)
    async with db.raw_connection() as conn, conn.transaction():
        # Events of a tenant erased meanwhile are dropped, not applied again; an erasure
        # that began while this batch was read waits for it, or it for the erasure.
        await hold_tenants(conn, db.schema, {m.tenant_id for m in candidates})
        deferred = await tenants_rebucketing(
            conn, {m.tenant_id for m in candidates if m.tenant_id not in erased}
        )
        latest = [
            m for m in candidates if m.tenant_id not in erased and m.tenant_id not in deferred
        ]
        others = [m for m in latest if m.type != "order_line"]
        zones = await store_zones_for(conn, {(m.tenant_id, m.source.store_id) for m in latest})
        lines = [
            _line_row(m, zones.get((m.tenant_id, m.source.store_id)))
            for m in latest
            if m.type == "order_line"
        ]
        repository = FactRepository(conn)
        applied_lines = await repository.apply_order_lines(lines)
        raw_rows = [_raw_row(m) for m in others]
        replaced = await repository.replaced_raw(raw_rows)
        # A new version may move an event out of a store no other event of the batch
        # names: what it leaves is taken out of the local day it was added to, in that
        # store's own zone, not its marketplace's.
        zones |= await store_zones_for(conn, {(r["tenant_id"], r["store_id"]) for r in replaced})
        # A warehouse's stock on a date is its latest snapshot, not the sum of them: the
        # snapshots counted for the keys this batch touches, before and after it.
        keys = {
            _snapshot_key(m.tenant_id, m.source.platform, m.source.store_id, m.payload)
            for m in others
            if m.type == "inventory_snapshot"
        } | {
            _snapshot_key(r["tenant_id"], r["platform"], r["store_id"], r["payload"])
            for r in replaced
            if r["type"] == "inventory_snapshot"
        }
        counted_before = await repository.latest_snapshots(keys)
        applied_ids = await repository.store_raw(raw_rows)
        counted_after = await repository.latest_snapshots(keys)
        applied = [m for m in others if (m.tenant_id, m.event_id) in applied_ids]
        added = [
            (_source(m.tenant_id, m.source, zones), m.typed_payload())
            for m in applied
            if m.type != "inventory_snapshot"
        ] + [(_source_of_row(row, zones), _payload_of_row(row)) for row in counted_after]
        removed = [
            (_source_of_row(row, zones), _payload_of_row(row))
            for row in replaced
            if row["type"] != "inventory_snapshot"
        ] + [(_source_of_row(row, zones), _payload_of_row(row)) for row in counted_before]
        await repository.move_measures(added, removed)
        await move_order_attachments(
            conn,
            attached_keys(
                [
                    (m.tenant_id, m.source.platform, m.source.store_id, m.payload.get("order_id"))
                    for m in applied
                    if m.type in ATTACHED_TYPES
                ]
                + [
                    (r["tenant_id"], r["platform"], r["store_id"], r["payload"].get("order_id"))
                    for r in replaced
                    if r["type"] in ATTACHED_TYPES
                ]
            ),
            lines_moved=applied_lines > 0,
        )
        await repository.upsert_fx_rates(
            [
                (m.tenant_id, m.event_id, p.date, p.base, p.quote, p.rate, m.ingested_at)
                for m in applied
                if isinstance(p := m.typed_payload(), FxRate)
            ]
        )
        await repository.upsert_unit_costs(
            [
                (
                    m.tenant_id,
                    m.event_id,
                    p.sku,
                    p.effective_from,
                    p.cost.amount,
                    p.cost.currency,
                    m.source.platform,
                    m.source.store_id,
                    m.ingested_at,
                )
                for m in applied
                if isinstance(p := m.typed_payload(), UnitCost)
            ]
        )
        shipments = [(m, p) for m in applied if isinstance(p := m.typed_payload(), Shipment)]
        await repository.track_open_shipments(
            [
                (m.tenant_id, m.event_id, m.source.platform, m.source.store_id,
                 m.source.marketplace, p.promised_ship_by)
                for m, p in shipments
                if p.shipped_at is None and not p.cancelled_by_seller_before_ship
            ],
            # A shipment replaced by another type (ingest refuses that; kept data may
            # predate it) leaves no open row behind.
            [(m.tenant_id, m.event_id) for m, _ in shipments]
            + [(r["tenant_id"], r["event_id"]) for r in replaced if r["type"] == "shipment"],
        )  # fmt: skip
        changed = applied_lines + len(applied)
        if changed:
            # Cached answers of these tenants are stale from this commit on.
            await bump_versions(conn, {m.tenant_id for m in latest})
        return Applied(changed, deferred)


def _snapshot_key(
    tenant_id: str, platform: str, store_id: str, payload: dict[str, Any]
) -> tuple[str, ...]:
    """What one inventory snapshot replaces another of: (tenant, platform, store, SKU,
    warehouse, date), as the kept payload writes them, whatever marketplace it names."""
    return (tenant_id, platform, store_id, payload["sku"], payload["warehouse"], payload["date"])


def _source(tenant_id: str, source: EventSource, zones: StoreZones) -> Source:
    zone = zones.get((tenant_id, source.store_id))
    return Source(tenant_id, source.platform, source.store_id, source.marketplace, zone)


def _source_of_row(row: Any, zones: StoreZones) -> Source:
    zone = zones.get((row["tenant_id"], row["store_id"]))
    return Source(row["tenant_id"], row["platform"], row["store_id"], row["marketplace"], zone)


def _payload_of_row(row: Any) -> Payload:
    return PAYLOAD_MODELS[row["type"]].model_validate(row["payload"], context=STORED)


@dataclass(frozen=True)
class ReadAgain:
    """Where a batch must be read again from, in each partition, and after what pause:
    of the whole consumer (a failure), or of those partitions only (``held``: events
    of a tenant being rebucketed, while the other partitions are read on)."""

    offsets: dict[TopicPartition, int]
    pause: float
    held: bool = False
    # From the group's committed offsets instead: the partitions were assigned again
    # since the batch was read, and a broker that restarted empty has a log of its own,
    # where the batch's offsets point past what it was sent again.
    from_committed: bool = False


def _partition(record: ConsumerRecord[bytes, bytes]) -> TopicPartition:
    return TopicPartition(record.topic, record.partition)


def _before(record: ConsumerRecord[bytes, bytes], offsets: dict[TopicPartition, int]) -> bool:
    """Whether the record lies before its partition's offset in ``offsets``."""
    return record.offset < offsets[_partition(record)]


def _first_offsets_of(
    good: list[tuple[ConsumerRecord[bytes, bytes], EventMessage]], tenants: frozenset[str]
) -> dict[TopicPartition, int]:
    """Each partition's first record of these tenants."""
    first: dict[TopicPartition, int] = {}
    for record, message in good:
        if message.tenant_id in tenants:
            partition = _partition(record)
            first[partition] = min(record.offset, first.get(partition, record.offset))
    return first


class _ReadAhead:
    """The next batch, read and parsed in a task of its own while one is applied. What
    it has read is kept outside the task, so a read stopped midway still tells it."""

    def __init__(self, read: Callable[[_Gathering], Coroutine[Any, Any, Fetched | None]]) -> None:
        self.gathering = _Gathering()
        self.task: asyncio.Task[Fetched | None] = asyncio.create_task(
            read(self.gathering), name="fact-consumer-fetch"
        )

    async def stopped(self) -> Fetched | None:
        """Stops it: the batch it had read by then, if any (not yet applied)."""
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        return self.gathering.fetched() if self.gathering.count else None


async def _seek_committed(consumer: AIOKafkaConsumer) -> None:
    """Every assigned partition from the group's committed offset, or from its start
    when the group has none there (a broker that restarted empty)."""
    for partition in consumer.assignment():
        try:
            async with asyncio.timeout(COMMIT_SECONDS):
                offset = await consumer.committed(partition)
        except TimeoutError:
            raise KafkaConnectionError("reading the committed offsets hung") from None
        if offset is None:
            await consumer.seek_to_beginning(partition)
        else:
            consumer.seek(partition, offset)


async def _discard(ahead: _ReadAhead | None) -> None:
    """Stops a read ahead whose batch will be read again from the committed offsets."""
    if ahead is not None:
        await ahead.stopped()


def passing(exc: BaseException) -> bool:
    """Whether a failure may pass by itself: the database or the network, not the data."""
    return isinstance(
        exc,
        (
            *CONNECTION_LOST,
            asyncio.TimeoutError,
            asyncpg.exceptions.TransactionRollbackError,
            asyncpg.exceptions.InsufficientResourcesError,
            SQLAlchemyError,
        ),
    )


def the_data_at_fault(exc: BaseException) -> bool:
    """A failure the record's own values cause, the same at every attempt: a value the
    database refuses (SQLSTATE class 22) or a limit it passes (54: a key too long for
    an index)."""
    state = sqlstate(exc)
    return state is not None and state[:2] in ("22", "54")


# A consumer whose batches fail this many times in a row is not ready: answers lack
# every event since (one retry is a passing fault, a batch isolated record by record
# takes two).
FAILURES_NOT_READY = 3


class _Membership(ConsumerRebalanceListener):
    """Whether the consumer's group has given it partitions since it last took them
    away: after a broker restart the consumer keeps its old assignment while it joins
    again, and reads nothing until the group answers."""

    def __init__(self) -> None:
        self.joined = False
        # How many times the group has taken the consumer's partitions or given them.
        self.changes = 0

    async def on_partitions_revoked(self, revoked: Any) -> None:
        self.joined = False
        self.changes += 1

    async def on_partitions_assigned(self, assigned: Any) -> None:
        self.joined = True
        self.changes += 1

    def unchanged_since(self, seen: int) -> bool:
        """Whether the consumer holds, as a member, the partitions it held at ``seen``."""
        return self.joined and self.changes == seen


class FactConsumer:
    def __init__(self, db: Database, settings: Settings, erased: Container[str] = ()) -> None:
        self.db = db
        self.settings = settings
        # Tenants erased meanwhile: their late events are dropped, not applied again.
        self.erased = erased
        self.counters = ConsumerCounters()
        self._task: asyncio.Task[None] | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._connected = False
        self._membership = _Membership()
        self._group_watch = GroupWatch()
        self._failed_in_a_row = 0
        # The first offsets of the batch that failed last, to tell a retry of it.
        self._failed_from: dict[TopicPartition, int] = {}
        # Partitions paused until then: a tenant of theirs is being rebucketed.
        self._held_until: dict[TopicPartition, float] = {}

    @property
    def deadletter_topic(self) -> str:
        return self.settings.topic_prefix + DEADLETTER_TOPIC

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="fact-consumer")

    def readiness(self) -> str:
        """ "ok" once the consumer reads the event stream. Until its group gives it
        partitions (seconds after a restart: the broker waits out the session of the
        member before it), KPI answers lack every event pushed meanwhile."""
        if self._task is None or self._task.done():
            return "not running"
        if self._consumer is None or not self._connected:
            return "connecting to the broker"
        if not self._membership.joined or not self._in_its_group():
            return "joining the event stream: no partitions assigned yet"
        if self._failed_in_a_row >= FAILURES_NOT_READY:
            return f"applying events failed {self._failed_in_a_row} times in a row (see its log)"
        return "ok"

    def _in_its_group(self) -> bool:
        return in_its_group(self._consumer)

    async def stop(self) -> None:
        await stop_task(self._task)
        await self._close()

    async def _close(self) -> None:
        self._connected = False
        self._held_until.clear()
        consumer, self._consumer = self._consumer, None
        producer, self._producer = self._producer, None
        await stop_client(consumer, "fact consumer")
        await stop_client(producer, "dead-letter producer")

    async def _connect(self) -> AIOKafkaConsumer:
        if self._consumer is not None and self._connected:
            return self._consumer
        prefix = self.settings.topic_prefix
        topics = all_event_topics(prefix)
        await ensure_topics(
            self.settings.kafka_bootstrap_servers,
            [*topics, self.deadletter_topic],
            create=self.settings.kafka_create_topics,
        )
        # Kept before start() so stop() closes them even when cancelled mid-start.
        self._producer = make_producer(self.settings.kafka_bootstrap_servers)
        await self._producer.start()
        self._consumer = make_consumer(
            self.settings.kafka_bootstrap_servers,
            topics,
            self.settings.consumer_group,
            max_poll_records=BATCH_RECORDS,
            listener=self._membership,
        )
        self._membership.joined = False
        await self._consumer.start()
        self._connected = True
        return self._consumer

    async def _run(self) -> None:
        # The next batch is read and parsed while one is applied: parsing is this
        # process's work, applying mostly PostgreSQL's.
        ahead: _ReadAhead | None = None
        try:
            while True:
                try:
                    consumer = await self._connect()
                    self._group_watch.check(self._membership.joined and self._in_its_group())
                    self._resume_held(consumer)
                    if ahead is None:
                        fetched = await self._fetch(consumer)
                    else:
                        fetched, ahead = await ahead.task, None
                    if fetched is None:
                        continue
                    applied = asyncio.Event()
                    ahead = _ReadAhead(partial(self._fetch, consumer, applied))
                    again = await self._handle(consumer, fetched)
                    applied.set()
                    if again is not None:
                        dropped, ahead = await ahead.stopped(), None
                        await self._read_again(consumer, again, dropped)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    if isinstance(exc, (KafkaError, OSError)):
                        log.warning("consumer lost the broker: %s", exc)
                    else:
                        # A fault of ours must not stop consuming for good either.
                        log.exception("the consumer failed; it starts again")
                    # Either way it starts again from the committed offsets.
                    await _discard(ahead)
                    ahead = None
                    await self._close()
                    await asyncio.sleep(RETRY_SECONDS)
        finally:
            await _discard(ahead)

    async def _fetch(
        self,
        consumer: AIOKafkaConsumer,
        applied: asyncio.Event | None = None,
        gathering: _Gathering | None = None,
    ) -> Fetched | None:
        """The next batch, parsed, into ``gathering``. Read ahead while a batch is
        applied (``applied`` not yet set), it goes on taking the records that arrive
        until that apply ends, up to BATCH_RECORDS: the next apply then holds every event
        that came meanwhile, not only those that had come when it began, and is not kept
        waiting one apply more."""
        gathering = gathering or _Gathering()
        batches = await consumer.getmany(timeout_ms=500, max_records=BATCH_RECORDS)
        if not batches:
            return None
        # As read: aiokafka drops what it fetched for partitions assigned again since.
        gathering.group_changes = self._membership.changes
        await gathering.take(self.db, batches)
        while applied is not None and gathering.count < BATCH_RECORDS:
            if not applied.is_set():
                # Not wait_for: in 3.11 it can swallow a cancellation that comes as the
                # wait ends, and this loop would then never stop.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(GATHER_SECONDS):
                        await applied.wait()
            more = await consumer.getmany(timeout_ms=0, max_records=BATCH_RECORDS - gathering.count)
            await gathering.take(self.db, more)
            if applied.is_set():
                break
        return gathering.fetched()

    async def _read_again(
        self, consumer: AIOKafkaConsumer, again: ReadAgain, dropped: Fetched | None
    ) -> None:
        """After a pause, reads again from where the batch left off, and from the batch
        read ahead of it, which was dropped: neither is committed, neither is lost."""
        if again.from_committed:
            await _seek_committed(consumer)
            await asyncio.sleep(again.pause)
            return
        offsets = dict(dropped.first) if dropped is not None else {}
        for partition, offset in again.offsets.items():
            offsets[partition] = min(offset, offsets.get(partition, offset))
        # A partition no longer assigned (the group rebalanced) is read from its
        # committed offset by whoever is assigned it next.
        assigned = consumer.assignment()
        for partition, offset in offsets.items():
            if partition in assigned:
                consumer.seek(partition, offset)
        if not again.held:
            await asyncio.sleep(again.pause)
            return
        resume_at = time.monotonic() + again.pause
        held = [p for p in again.offsets if p in assigned]
        consumer.pause(*held)
        self._held_until.update(dict.fromkeys(held, resume_at))

    def _resume_held(self, consumer: AIOKafkaConsumer) -> None:
        """Reads again the partitions held for a tenant being rebucketed, once their
        pause is over."""
        now = time.monotonic()
        due = [p for p, until in self._held_until.items() if until <= now]
        for partition in due:
            del self._held_until[partition]
        if due:
            consumer.resume(*(p for p in due if p in consumer.assignment()))

    def _read_again_from_failed(self, first: dict[TopicPartition, int]) -> bool:
        """Whether a batch starts where the one that failed last did, in every partition
        that one read: it holds its records again, whatever else arrived meanwhile in
        other partitions (while events keep coming, a batch read again is seldom the
        very same, and a bad record was retried whole for minutes, holding up all)."""
        return bool(self._failed_from) and all(
            first.get(partition) == offset for partition, offset in self._failed_from.items()
        )

    async def _handle(self, consumer: AIOKafkaConsumer, fetched: Fetched) -> ReadAgain | None:
        """Applies a batch and commits its offsets as far as it was applied; None when
        it was all, else where to read again from: the whole batch after a failure, or
        each partition from its first event of a tenant being rebucketed (the events
        after it that were applied are then skipped as kept)."""
        batches, parsed = fetched.batches, fetched.parsed
        records = [record for partition in batches.values() for record in partition]
        with tracer.start_as_current_span(
            "apply events", links=push_links([r for r, _ in parsed.good])
        ) as span:
            span.set_attribute("messaging.batch.message_count", len(records))
            first = fetched.first
            try:
                result = await apply_messages(self.db, [m for _, m in parsed.good], self.erased)
                applied, deferred = result.changed, result.deferred
            except Exception as exc:
                isolated = None
                if not passing(exc) and self._read_again_from_failed(first):
                    # Failed twice, not for want of the database: find the records at
                    # fault, so one bad event does not hold up every event behind it.
                    isolated = await self._apply_one_by_one(parsed)
                if isolated is None:
                    # Not committed: read the batch again after a pause, never lose it.
                    log.exception("applying a batch failed; it will be retried")
                    self._failed_from = first
                    self._failed_in_a_row += 1
                    return ReadAgain(first, RETRY_SECONDS)
                applied, deferred, faulty = isolated
                at_fault = {id(record) for record, _ in faulty}
                parsed = Parsed(
                    [g for g in parsed.good if id(g[0]) not in at_fault],
                    parsed.bad + faulty,
                    parsed.repeats,
                )
            self._failed_from = {}
            self._failed_in_a_row = 0
            later = _first_offsets_of(parsed.good, deferred)
            done = {
                tp: min(items[-1].offset + 1, later.get(tp, items[-1].offset + 1))
                for tp, items in batches.items()
            }
            # What lies past a partition's committed offset is dead-lettered or counted
            # when it is read again.
            bad = [(r, why) for r, why in parsed.bad if _before(r, done)] if later else parsed.bad
            await self._deadletter(bad)
            # Not while the group is taking the partitions back either: a broker that
            # restarted empty took a commit made then, before it gave them again.
            committed = self._membership.unchanged_since(fetched.group_changes)
            if not committed:
                # Its offsets may be of a log the broker lost: committed to the new one,
                # they skipped what was sent again below them, accepted events never
                # applied (what was applied is skipped when read again).
                log.warning(
                    "the group took the partitions back or gave them again since the batch "
                    "was read: not committed; reading on from the group's offsets"
                )
            else:
                committed = await self._commit(consumer, done)
        self.counters.batches += 1
        self.counters.records += (
            sum(1 for r in records if _before(r, done)) if later else len(records)
        )
        self.counters.applied += applied
        self.counters.deadlettered += len(bad)
        self.counters.repeats += parsed.repeats
        if ingested := [m.ingested_at for _, m in parsed.good if m.tenant_id not in deferred]:
            # Never back: held events applied late came in before those applied.
            newest, latest = max(ingested), self.counters.last_ingested_at
            self.counters.last_ingested_at = newest if latest is None else max(latest, newest)
        if not committed:
            return ReadAgain(first, RETRY_SECONDS, from_committed=True)
        return ReadAgain(later, DEFERRED_SECONDS, held=True) if later else None

    async def _commit(self, consumer: AIOKafkaConsumer, offsets: dict[TopicPartition, int]) -> bool:
        """Commits an applied batch's offsets; False when the group rebalanced under the
        consumer (a broker that restarted has forgotten every member).

        The consumer then rejoins by itself, and the batch and the one read ahead are
        read again (what was applied is skipped as kept already). A new consumer would
        instead wait for this one's session to time out: Tansu ignores LeaveGroup."""
        try:
            # A commit waits for the group's coordinator without end: one that never
            # comes is a broker lost, and the consumer starts again.
            async with asyncio.timeout(COMMIT_SECONDS):
                await consumer.commit(offsets)
        except TimeoutError:
            raise KafkaConnectionError("a commit hung; the consumer starts again") from None
        except CommitFailedError as exc:
            log.warning("the consumer's group rebalanced; it reads on from there: %s", exc)
            return False
        return True

    async def _apply_one_by_one(
        self, parsed: Parsed
    ) -> tuple[int, frozenset[str], list[tuple[ConsumerRecord[bytes, bytes], str]]] | None:
        """Applies each event in a transaction of its own: how many changed something,
        the tenants left for later, and the records that failed with why. None (retry
        the batch later) when the database itself failed, or every event did: that is
        no bad record but a fault that would dead-letter everything."""
        applied = 0
        deferred: frozenset[str] = frozenset()
        faulty: list[tuple[ConsumerRecord[bytes, bytes], str]] = []
        all_the_data = True
        for record, message in parsed.good:
            try:
                result = await apply_messages(self.db, [message], self.erased)
                applied += result.changed
                deferred |= result.deferred
            except Exception as exc:
                if passing(exc):
                    return None
                all_the_data = all_the_data and the_data_at_fault(exc)
                faulty.append((record, f"cannot be applied: {type(exc).__name__}: {exc}"))
        if len(faulty) == len(parsed.good) and not all_the_data:
            return None
        return applied, deferred, faulty

    async def _deadletter(self, bad: list[tuple[ConsumerRecord[bytes, bytes], str]]) -> None:
        if not bad:
            return
        assert self._producer is not None
        deliveries = []
        for record, reason in bad:
            # Said in its tenant's lines: its key is its tenant's id, as ingest's relay
            # keys every record.
            tenant = current_tenant.set(record.key.decode(errors="replace") if record.key else None)
            try:
                log.warning(
                    "dead-lettered a record",
                    extra={
                        "fields": {"topic": record.topic, "offset": record.offset, "reason": reason}
                    },
                )
            finally:
                current_tenant.reset(tenant)
            deliveries.append(
                await self._producer.send(
                    self.deadletter_topic,
                    value=record.value,
                    key=record.key,
                    headers=[
                        ("reason", reason.encode()),
                        ("source_topic", record.topic.encode()),
                        ("source_partition", str(record.partition).encode()),
                        ("source_offset", str(record.offset).encode()),
                    ],
                )
            )
        await asyncio.gather(*deliveries)
