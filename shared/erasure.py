"""Tenant erasure over Kafka: the gateway asks, every service erases and confirms.

The gateway publishes :class:`ErasureRequested` to ``lodestar.tenant-erasures.v1``.
Each other service runs an :class:`ErasureListener` (its own consumer group) that
erases the tenant's rows of its schema with :func:`shared.tenant_data.erase_tenant`,
publishes :class:`ErasureDone` to ``lodestar.tenant-erasures-done.v1`` and only then
commits its offset. A redelivered request erases nothing more and confirms again, so
at-least-once delivery is enough. Messages are keyed by tenant like every event.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord
from aiokafka.errors import KafkaConnectionError, KafkaError
from opentelemetry import trace
from pydantic import BaseModel, ConfigDict, ValidationError

from shared.db import Database
from shared.erased import ErasedTenants, RecentlyErased
from shared.kafka import (
    COMMIT_SECONDS,
    GroupWatch,
    broker_reachable,
    ensure_topics,
    in_its_group,
    make_consumer,
    make_producer,
    stop_client,
)
from shared.settings import ServiceSettings
from shared.tasks import stop_task
from shared.telemetry import context_from_kafka, kafka_headers
from shared.tenant_data import TenantTables, erase_tenant

log = logging.getLogger(__name__)
tracer = trace.get_tracer("lodestar.erasure")

ERASURE_TOPIC = "lodestar.tenant-erasures.v1"
ERASURE_DONE_TOPIC = "lodestar.tenant-erasures-done.v1"
RETRY_SECONDS = 1.0
# How often a listener checks that its topics exist: a broker that restarted empty (the
# embedded Tansu keeps none) has lost them, and its consumer, still connected, would
# wait on them for ever while erasures stay unconfirmed.
TOPICS_RECHECK_SECONDS = 30.0

Records = list[ConsumerRecord[bytes, bytes]]
Message = TypeVar("Message", bound=BaseModel)


def readable(
    model: type[Message], record: ConsumerRecord[bytes, bytes], what: str
) -> Message | None:
    """The record read as ``model``, or None once logged as skipped: nothing to act on
    can be read from it, and reading it again would not change that."""
    try:
        return model.model_validate_json(record.value or b"")
    except ValidationError as exc:
        log.warning(
            f"unreadable {what} skipped",
            extra={"fields": {"offset": record.offset, "reason": str(exc.errors()[0])}},
        )
        return None


Handler = Callable[[Records], Awaitable[None]]


class ErasureRequested(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    erasure_id: str
    tenant_id: str


class ErasureDone(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    erasure_id: str
    tenant_id: str
    service: str
    rows_deleted: int


def erasure_topics(prefix: str = "") -> list[str]:
    """Both erasure topics, with the deployment's topic prefix."""
    return [prefix + ERASURE_TOPIC, prefix + ERASURE_DONE_TOPIC]


def listener_group(prefix: str, service: str) -> str:
    return f"{prefix}lodestar-{service}-erasure"


class Publisher:
    """A producer started on first use, after the erasure topics exist.

    ``send()`` one message at a time and wait for the broker's ack: these messages are
    few, and the embedded broker keeps only about 16 KB of a batch (see shared.kafka).
    """

    def __init__(self, settings: ServiceSettings) -> None:
        self.settings = settings
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()

    async def _started(self) -> AIOKafkaProducer:
        async with self._lock:
            if self._producer is None:
                bootstrap = self.settings.kafka_bootstrap_servers
                if not await broker_reachable(bootstrap):
                    # Probed first: aiokafka would log an error of its own on every retry.
                    raise KafkaConnectionError(f"no broker accepts connections at {bootstrap}")
                await ensure_topics(
                    bootstrap,
                    erasure_topics(self.settings.topic_prefix),
                    create=self.settings.kafka_create_topics,
                )
                producer = make_producer(bootstrap, linger_ms=0)
                try:
                    await producer.start()
                except BaseException:
                    await stop_client(producer, "erasure producer")
                    raise
                self._producer = producer
            return self._producer

    async def send(self, topic: str, key: str, message: BaseModel) -> None:
        """Publishes and waits for the ack; on a broker error the producer is dropped
        (the next call makes a new one) and the error propagates."""
        producer = await self._started()
        try:
            delivery = await producer.send(
                self.settings.topic_prefix + topic,
                value=message.model_dump_json().encode(),
                key=key.encode(),
                # Each service's erasure is then in the trace of the request that asked.
                headers=kafka_headers(),
            )
            await delivery
        except KafkaError:
            await self.close()
            raise

    async def close(self) -> None:
        producer, self._producer = self._producer, None
        await stop_client(producer, "erasure producer")


class TopicListener:
    """Consumes ``topic`` in ``group`` and hands each batch to ``handler``; commits the
    batch's offsets only after the handler returns. A handler that raises gets the same
    batch again after a pause; a lost broker is reconnected to. Runs until stopped."""

    def __init__(
        self, settings: ServiceSettings, topic: str, group: str, handler: Handler, name: str
    ) -> None:
        self.settings = settings
        self.topic = settings.topic_prefix + topic
        self.group = group
        self.handler = handler
        self.name = name
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._topics_checked_at = 0.0
        self._group_watch = GroupWatch()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self.name)

    async def _topics_made_again(self) -> bool:
        """Makes the topics again if the broker lost them; True when it had."""
        self._topics_checked_at = time.monotonic()
        missing = await ensure_topics(
            self.settings.kafka_bootstrap_servers,
            erasure_topics(self.settings.topic_prefix),
            create=self.settings.kafka_create_topics,
        )
        return bool(missing) and self.settings.kafka_create_topics

    async def stop(self) -> None:
        await stop_task(self._task)
        await self._close()

    async def _close(self) -> None:
        consumer, self._consumer = self._consumer, None
        await stop_client(consumer, f"{self.name} consumer")

    async def _connect(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            bootstrap = self.settings.kafka_bootstrap_servers
            if not await broker_reachable(bootstrap):
                raise KafkaConnectionError(f"no broker accepts connections at {bootstrap}")
            await self._topics_made_again()
            # Kept before start() so stop() closes it even when cancelled mid-start.
            self._consumer = make_consumer(bootstrap, [self.topic], self.group, 100)
            await self._consumer.start()
        return self._consumer

    async def _committed(self, consumer: AIOKafkaConsumer, offsets: dict[Any, int]) -> bool:
        """Commits; False, and the consumer closed, when the commit hung: aiokafka
        retries one to a topic the broker lost (it restarted empty) without end, and the
        listener would never come round to making the topics again. What was handled
        is read again (handlers are idempotent)."""
        try:
            async with asyncio.timeout(COMMIT_SECONDS):
                await consumer.commit(offsets)
        except TimeoutError:
            log.warning("%s: a commit hung; the topics are checked and it reconnects", self.name)
            await self._topics_made_again()
            await self._close()
            return False
        return True

    async def _run(self) -> None:
        while True:
            try:
                consumer = await self._connect()
                self._group_watch.check(in_its_group(consumer))
                due = time.monotonic() - self._topics_checked_at > TOPICS_RECHECK_SECONDS
                if due and await self._topics_made_again():
                    log.warning("%s: the broker had lost its topics; made again", self.name)
                    # A new consumer, which sees the topics as they are now.
                    await self._close()
                    continue
                batches = await consumer.getmany(timeout_ms=500)
                for partition, records in batches.items():
                    try:
                        await self.handler(records)
                    except Exception:
                        # Not committed (a database or a publish failure): the records
                        # come again after a pause; handlers are idempotent.
                        log.exception("%s: handling failed; it will be retried", self.name)
                        consumer.seek(partition, records[0].offset)
                        await asyncio.sleep(RETRY_SECONDS)
                        continue
                    if not await self._committed(consumer, {partition: records[-1].offset + 1}):
                        break
            except asyncio.CancelledError:
                raise
            except (KafkaError, OSError) as exc:
                log.warning("%s lost the broker: %s", self.name, exc)
                await self._close()
                await asyncio.sleep(RETRY_SECONDS)


class ErasureListener:
    """A service's side of erasure: erase the tenant's rows of its schema, confirm."""

    def __init__(
        self,
        service: str,
        db: Database,
        settings: ServiceSettings,
        tables: TenantTables | None = None,
        erased: RecentlyErased | ErasedTenants | None = None,
    ) -> None:
        self.service = service
        self.db = db
        self.tables = tables or TenantTables()
        # The service's app refuses these tenants' requests (see shared.access).
        self.erased = erased if erased is not None else RecentlyErased()
        self.publisher = Publisher(settings)
        self.listener = TopicListener(
            settings,
            ERASURE_TOPIC,
            listener_group(settings.topic_prefix, service),
            self.handle,
            name=f"{service}-erasure-listener",
        )

    def start(self) -> None:
        self.listener.start()

    async def stop(self) -> None:
        await self.listener.stop()
        await self.publisher.close()

    async def handle(self, records: Records) -> None:
        for record in records:
            request = readable(ErasureRequested, record, "erasure request")
            if request is None:
                continue
            with tracer.start_as_current_span(
                "erase tenant",
                context=context_from_kafka(record.headers),
                kind=trace.SpanKind.CONSUMER,
            ):
                await self._erase_and_confirm(request)

    async def _erase_and_confirm(self, request: ErasureRequested) -> None:
        # Refused from now on, so nothing brings rows back while they are deleted.
        self.erased.add(request.tenant_id)
        deleted = await self.erase(request.tenant_id)
        await self.publisher.send(
            ERASURE_DONE_TOPIC,
            request.tenant_id,
            ErasureDone(
                erasure_id=request.erasure_id,
                tenant_id=request.tenant_id,
                service=self.service,
                rows_deleted=sum(deleted.values()),
            ),
        )
        log.info(
            "tenant erased",
            extra={
                "fields": {
                    "erasure_id": request.erasure_id,
                    "tenant": request.tenant_id,
                    "rows_deleted": deleted,
                }
            },
        )

    async def erase(self, tenant_id: str) -> dict[str, int]:
        async with self.db.raw_connection() as conn:
            return await erase_tenant(conn, self.db.schema, self.tables, tenant_id)
