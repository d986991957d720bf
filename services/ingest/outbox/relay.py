"""The outbox relay: publishes accepted events to Kafka, at least once, in order of acceptance.

Woken by LISTEN/NOTIFY when a push commits, with polling as a fallback. One relay
at a time claims rows (the others, on other ingest replicas, find the claim taken
and wait for the next wake-up), and marks them sent only after the broker
acknowledged every one of them. While the broker is away the rows simply wait;
pushes keep being accepted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError, KafkaError
from sqlalchemy.exc import DBAPIError

from services.ingest.config import Settings
from services.ingest.events.repository import EventRepository
from services.ingest.outbox.repository import OUTBOX_CHANNEL, OutboxRepository
from shared.db import Database, asyncpg_dsn
from shared.events import DEADLETTER_TOPIC, all_event_topics
from shared.kafka import broker_reachable, ensure_topics, make_producer, stop_client
from shared.tasks import stop_task

log = logging.getLogger(__name__)

MIN_BACKOFF_SECONDS = 0.5
MAX_BACKOFF_SECONDS = 5.0
# What an outage looks like: the broker or PostgreSQL unreachable, refusing or slow.
# (SQLAlchemy wraps the pool's connect errors in DBAPIError.)
OUTAGE_ERRORS = (
    KafkaError,
    OSError,
    TimeoutError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    DBAPIError,
)
TRACE_HEADERS = ("traceparent", "tracestate")
# A topic no one writes to or reads: the broker that lacks it has lost its log (the
# embedded broker keeps it in memory), whoever created the event topics since.
LOG_MARKER_TOPIC = "lodestar.ingest-log-marker.v1"


@dataclass
class RelayCounters:
    """The relay's own figures: lag is measured from these, never from broker offsets."""

    published: int = 0
    failed_batches: int = 0
    last_error: str | None = None


class OutboxRelay:
    """One background task of the ingest service; ``start`` and ``stop`` from the lifespan."""

    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings
        self.counters = RelayCounters()
        self._wake = asyncio.Event()
        self._producer: AIOKafkaProducer | None = None
        self._listener: asyncpg.Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self._last_cleanup = float("-inf")
        self._last_broker_check = time.monotonic()
        self._republish_pending = settings.republish_on_start

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="outbox-relay")

    async def stop(self) -> None:
        """Cancels the loop (an unfinished batch rolls back and stays unsent), then closes."""
        await stop_task(self._task)
        self._task = None
        await self._close_producer()
        if self._listener is not None:
            listener, self._listener = self._listener, None
            await listener.close()

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    @property
    def connected(self) -> bool:
        """True while the relay listens for pushes and holds a started producer."""
        return (
            self._producer is not None
            and self._listener is not None
            and not self._listener.is_closed()
        )

    async def backlog(self) -> int:
        """Rows of every tenant not yet acknowledged by the broker."""
        async with self.db.raw_connection() as conn:
            return await OutboxRepository(conn).pending()

    async def _listen(self) -> None:
        if self._listener is not None and not self._listener.is_closed():
            return
        if self._listener is not None:
            await self._listener.close()
        self._listener = await asyncpg.connect(asyncpg_dsn(self.db.url))
        await self._listener.add_listener(OUTBOX_CHANNEL, self._notified)

    def _notified(self, *_: Any) -> None:
        self._wake.set()

    async def _ensure_producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            bootstrap = self.settings.kafka_bootstrap_servers
            if not await broker_reachable(bootstrap):
                # Probed first: aiokafka would log an error of its own on every retry.
                raise KafkaConnectionError(f"no broker accepts connections at {bootstrap}")
            # aiokafka's default 16 KB max_batch_size stays: Tansu keeps only about
            # 16 KB of a record batch, so batches are formed by send() and linger_ms.
            producer = make_producer(bootstrap, linger_ms=self.settings.relay_linger_ms)
            try:
                await producer.start()
                await self._ensure_topics()
            except BaseException:
                await stop_client(producer, "relay producer")
                raise
            self._producer = producer
        return self._producer

    async def _ensure_topics(self) -> None:
        """Creates what the broker lacks (the embedded one may not auto-create topics
        with the right partitions). A broker without the marker has lost its log: with
        ``republish_on_start`` (a broker that keeps no log) what was sent to it within
        the retention window is published again, as at a start."""
        prefix = self.settings.topic_prefix
        topics = [*all_event_topics(prefix), prefix + DEADLETTER_TOPIC, prefix + LOG_MARKER_TOPIC]
        created = await ensure_topics(
            self.settings.kafka_bootstrap_servers, topics, create=self.settings.kafka_create_topics
        )
        if prefix + LOG_MARKER_TOPIC in created and self.settings.republish_on_start:
            self._republish_pending = True

    async def _check_broker_if_due(self) -> None:
        # A broker restarted between two batches is not seen by the producer, which
        # reconnects by itself: its lost log is found by asking now and then.
        if not self.settings.republish_on_start or self._producer is None:
            return
        if time.monotonic() - self._last_broker_check < self.settings.broker_check_seconds:
            return
        self._last_broker_check = time.monotonic()
        await self._ensure_topics()

    async def _close_producer(self) -> None:
        producer, self._producer = self._producer, None
        # Dropped either way; a new one is made on the next try.
        await stop_client(producer, "relay producer")

    async def _republish_sent(self) -> None:
        """At a start, or when the broker has lost its log: it may have forgotten what
        it was sent."""
        async with self.db.raw_connection() as conn:
            queued = await OutboxRepository(conn).queue_again_since(
                self.settings.outbox_retention_hours
            )
        self._republish_pending = False
        log.info(
            "sent events queued again for a broker that keeps no log",
            extra={"fields": {"rows": queued}},
        )

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
                    log.info("relay publishing again", extra={"fields": self._figures()})
                outage_reported = False
                backoff = MIN_BACKOFF_SECONDS
                await self._cleanup_if_due()
                await self._check_broker_if_due()
                if published >= self.settings.relay_batch_size:
                    continue  # more may be waiting: no sleep between full batches
                # asyncio.timeout, not wait_for: on Python 3.11 wait_for drops a stop that
                # comes with a wake-up.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.settings.relay_poll_seconds):
                        await self._wake.wait()
            except OUTAGE_ERRORS as exc:
                self._failed(exc)
                if not outage_reported:
                    # One line per outage, not one per attempt or per row.
                    log.warning(
                        "relay cannot publish; events wait in the outbox: %s",
                        exc,
                        extra={"fields": {**self._figures(), "error": type(exc).__name__}},
                    )
                    outage_reported = True
                await self._close_producer()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
            except Exception as exc:
                # Not an outage but a fault (ours, or a client library's surprise): logged
                # whole every time; the loop keeps going so the outbox drains once it passes.
                self._failed(exc)
                log.exception("relay batch failed", extra={"fields": self._figures()})
                await self._close_producer()
                await asyncio.sleep(MAX_BACKOFF_SECONDS)

    def _failed(self, exc: BaseException) -> None:
        self.counters.failed_batches += 1
        self.counters.last_error = f"{type(exc).__name__}: {exc}"

    def _figures(self) -> dict[str, Any]:
        return {
            "published": self.counters.published,
            "failed_batches": self.counters.failed_batches,
        }

    async def relay_once(self) -> int:
        """Publishes one batch of unsent rows; returns how many were published.

        The rows are marked sent in the transaction that claimed them, after the broker
        acknowledged every one; on any failure the transaction rolls back and they wait.
        """
        producer = await self._ensure_producer()
        # After connecting: a start on a new broker asks for this once, not twice.
        if self._republish_pending:
            await self._republish_sent()
        async with self.db.raw_connection() as conn, conn.transaction():
            repository = OutboxRepository(conn)
            rows = await repository.claim(self.settings.relay_batch_size)
            if not rows:
                return 0
            await self._publish(producer, rows)
            await repository.mark_sent([row["id"] for row in rows])
        self.counters.published += len(rows)
        return len(rows)

    async def _publish(self, producer: AIOKafkaProducer, rows: list[asyncpg.Record]) -> None:
        deliveries: list[asyncio.Future[Any]] = []
        try:
            for row in rows:
                headers = [(name, row[name].encode()) for name in TRACE_HEADERS if row[name]]
                # send(), never send_batch(): see _ensure_producer.
                deliveries.append(
                    await producer.send(
                        row["topic"],
                        value=bytes(row["payload"]),
                        key=row["tenant_id"].encode(),
                        headers=headers,
                    )
                )
            outcomes = await asyncio.gather(*deliveries, return_exceptions=True)
        except BaseException:
            # Nobody will await these any more; the rows are retried as a whole.
            for delivery in deliveries:
                delivery.cancel()
            raise
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome

    async def _cleanup_if_due(self) -> None:
        # The embedded broker keeps its log in memory only: sent rows stay for a while.
        if time.monotonic() - self._last_cleanup < self.settings.cleanup_interval_seconds:
            return
        self._last_cleanup = time.monotonic()
        async with self.db.raw_connection() as conn:
            sent = await OutboxRepository(conn).delete_sent_before(
                self.settings.outbox_retention_hours
            )
            keys = await EventRepository(conn).delete_idempotency_keys_before(
                self.settings.idempotency_retention_hours
            )
        if sent or keys:
            log.info(
                "outbox cleanup",
                extra={"fields": {"sent_rows_deleted": sent, "idempotency_keys_deleted": keys}},
            )
