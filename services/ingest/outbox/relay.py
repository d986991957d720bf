"""The outbox relay: publishes accepted events to Kafka, at least once, in order of acceptance.

Woken by LISTEN/NOTIFY when a push commits, with polling as a fallback. Rows are
claimed with ``FOR UPDATE SKIP LOCKED`` so several ingest replicas can relay side by
side, and marked sent only after the broker acknowledged every one of them. While
the broker is away the rows simply wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass

import asyncpg
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from services.ingest.config import Settings
from services.ingest.events.repository import OUTBOX_CHANNEL
from services.ingest.outbox.repository import OutboxRepository
from shared.db import Database, asyncpg_dsn
from shared.events import DEADLETTER_TOPIC, all_event_topics
from shared.kafka import ensure_topics, make_producer

log = logging.getLogger(__name__)

MIN_BACKOFF_SECONDS = 0.5
MAX_BACKOFF_SECONDS = 5.0
CLEANUP_EVERY_SECONDS = 300.0


@dataclass
class RelayCounters:
    published: int = 0
    failed_batches: int = 0
    last_error: str | None = None


class OutboxRelay:
    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings
        self.counters = RelayCounters()
        self._wake = asyncio.Event()
        self._producer: AIOKafkaProducer | None = None
        self._listener: asyncpg.Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self._last_cleanup = 0.0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="outbox-relay")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._close_producer()
        if self._listener is not None:
            await self._listener.close()

    def wake(self) -> None:
        self._wake.set()

    async def _listen(self) -> None:
        if self._listener is not None and not self._listener.is_closed():
            return
        self._listener = await asyncpg.connect(asyncpg_dsn(self.db.url))
        await self._listener.add_listener(OUTBOX_CHANNEL, lambda *_: self._wake.set())

    async def _ensure_producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            producer = make_producer(
                self.settings.kafka_bootstrap_servers, linger_ms=self.settings.relay_linger_ms
            )
            try:
                await producer.start()
                prefix = self.settings.topic_prefix
                await ensure_topics(
                    self.settings.kafka_bootstrap_servers,
                    [*all_event_topics(prefix), prefix + DEADLETTER_TOPIC],
                )
            except BaseException:
                await producer.stop()
                raise
            self._producer = producer
        return self._producer

    async def _close_producer(self) -> None:
        if self._producer is not None:
            producer, self._producer = self._producer, None
            try:
                await producer.stop()
            except KafkaError:
                log.warning("producer did not stop cleanly")

    async def _run(self) -> None:
        backoff = MIN_BACKOFF_SECONDS
        outage_reported = False
        while True:
            try:
                await self._listen()
                # Cleared before reading, so a push committed meanwhile wakes the next wait.
                self._wake.clear()
                published = await self.relay_once()
                if outage_reported:
                    log.info("broker reachable again; relaying")
                outage_reported = False
                backoff = MIN_BACKOFF_SECONDS
                await self._cleanup_if_due()
                if published >= self.settings.relay_batch_size:
                    continue
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.settings.relay_poll_seconds)
            except asyncio.CancelledError:
                raise
            except (KafkaError, OSError, asyncpg.PostgresError, TimeoutError) as exc:
                self.counters.failed_batches += 1
                self.counters.last_error = f"{type(exc).__name__}: {exc}"
                if not outage_reported:
                    # One line per outage, not one per attempt.
                    log.warning("relay cannot publish; events wait in the outbox: %s", exc)
                    outage_reported = True
                await self._close_producer()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)

    async def relay_once(self) -> int:
        """Publishes one batch of unsent rows; returns how many were published."""
        producer = await self._ensure_producer()
        async with self.db.raw_connection() as conn, conn.transaction():
            repository = OutboxRepository(conn)
            rows = await repository.claim(self.settings.relay_batch_size)
            if not rows:
                return 0
            deliveries = []
            for row in rows:
                headers = (
                    [("traceparent", row["traceparent"].encode())] if row["traceparent"] else []
                )
                # send() rather than send_batch(): aiokafka batches by linger_ms within
                # its 16 KB max_batch_size, which the embedded broker keeps whole.
                deliveries.append(
                    await producer.send(
                        row["topic"],
                        value=bytes(row["payload"]),
                        key=row["tenant_id"].encode(),
                        headers=headers,
                    )
                )
            await asyncio.gather(*deliveries)
            await repository.mark_sent([row["id"] for row in rows])
        self.counters.published += len(rows)
        return len(rows)

    async def _cleanup_if_due(self) -> None:
        if time.monotonic() - self._last_cleanup < CLEANUP_EVERY_SECONDS:
            return
        self._last_cleanup = time.monotonic()
        async with self.db.raw_connection() as conn:
            deleted = await OutboxRepository(conn).delete_sent_before(
                self.settings.outbox_retention_hours
            )
        if deleted:
            log.info("outbox cleanup removed %d sent rows", deleted)
