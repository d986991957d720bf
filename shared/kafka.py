"""Kafka clients configured the one way every service uses them.

Messages are JSON events from :mod:`shared.events`, keyed by tenant. Producers never
use the idempotent mode (the embedded Tansu broker lacks it; consumers are idempotent
instead) and keep aiokafka's default 16 KB ``max_batch_size``: Tansu keeps only about
the first 16 KB of a record batch, so batching is done with ``send()`` and
``linger_ms``, never with large ``send_batch`` batches.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
import time

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, KafkaError, TopicAlreadyExistsError

log = logging.getLogger(__name__)

DEFAULT_PARTITIONS = 4
# Every request of our clients gives up after this long; a producer's stop() waits as
# long for what it still has to deliver.
REQUEST_TIMEOUT_MS = 15_000
# aiokafka's stop() may raise the cancellation of a fetch it cancelled itself, and a stop
# that never ends must not hold a service's shutdown. The limit is twice the request
# timeout, so that it never cuts a stop short that would end by itself: a producer left
# behind mid-stop goes on delivering beside its successor, and the embedded broker has
# lost records to two writers of one partition.
CLIENT_STOP_SECONDS = 2 * REQUEST_TIMEOUT_MS / 1000


def make_producer(bootstrap_servers: str, linger_ms: int = 5) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap_servers,
        enable_idempotence=False,
        acks="all",
        linger_ms=linger_ms,
        request_timeout_ms=REQUEST_TIMEOUT_MS,
        retry_backoff_ms=200,
    )


def make_consumer(
    bootstrap_servers: str,
    topics: list[str],
    group_id: str,
    max_poll_records: int = 2000,
    listener: ConsumerRebalanceListener | None = None,
) -> AIOKafkaConsumer:
    """A consumer that never commits on its own: the caller commits after its DB commit.
    ``listener`` hears its group take partitions away and give them."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers,
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=max_poll_records,
        # A tenant's events share one partition: at the default 1 MB a fetch holds about
        # 1,900 of them, and batches that small apply a fifth slower than 5,000.
        max_partition_fetch_bytes=4 * 1024 * 1024,
        fetch_max_bytes=16 * 1024 * 1024,
        # Tansu holds a group join for a time that grows with the session timeout, and a
        # member that went away (a restarted process; Tansu ignores LeaveGroup) holds up
        # the next join until its session times out. Measured on Tansu 0.6 (first join,
        # then a join after a member left): 6 s sessions 3.0 and 11.1 s, 3 s sessions 2.0
        # and 7.1 s, 2 s sessions 1.0 and 4.1 s. Three seconds, with a heartbeat each
        # second, still outlasts a two-second stall of the event loop.
        session_timeout_ms=3000,
        # How long the broker may hold a fetch that finds nothing new: an event arriving
        # meanwhile waited for the rest of it (Tansu answers when the wait ends). The
        # idle probe of bench/freshness.py went from 143-147 ms to 69-70 ms at p50.
        fetch_max_wait_ms=100,
        heartbeat_interval_ms=1000,
        request_timeout_ms=REQUEST_TIMEOUT_MS,
    )
    consumer.subscribe(topics, listener=listener)
    return consumer


async def ensure_topics(
    bootstrap_servers: str,
    topics: list[str],
    create: bool = True,
    partitions: int = DEFAULT_PARTITIONS,
) -> list[str]:
    """Creates the topics that do not exist yet (an existing topic is left alone), or,
    not to ``create``, says they are missing; returns those it found missing."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap_servers, request_timeout_ms=REQUEST_TIMEOUT_MS
    )
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in topics if t not in existing]
        if not missing:
            return []
        if not create:
            log.warning(
                "topics missing, left for the cluster to create",
                extra={"fields": {"topics": missing}},
            )
            return missing
        try:
            await admin.create_topics(
                [NewTopic(name=t, num_partitions=partitions, replication_factor=1) for t in missing]
            )
        except TopicAlreadyExistsError:
            log.info("topics were created concurrently", extra={"fields": {"topics": missing}})
        return missing
    finally:
        await admin.close()


def in_its_group(consumer: AIOKafkaConsumer | None) -> bool:
    """Whether the group's coordinator is known and knows this member. A broker that
    went away loses the coordinator, and one that restarted knows no member: the
    consumer still holds its old partitions then, but reads nothing until it has
    joined again (aiokafka's coordinator, which its API does not show)."""
    coordinator = getattr(consumer, "_coordinator", None)
    if coordinator is None:
        return True
    return coordinator.coordinator_id is not None and coordinator.member_id != ""


# How long a commit (or a read of the committed offsets) may wait for the group's
# coordinator: aiokafka waits for one without end, and a consumer that never gets it
# starts again.
COMMIT_SECONDS = 10.0


# A join takes seconds (3 s sessions; Tansu holds a join up to some 11 s): a consumer
# out of its group this long is wedged.
STUCK_OUT_OF_GROUP_SECONDS = 30.0


class GroupWatch:
    """Tells a consumer loop to start its consumer again when it has been out of its
    group too long: after a broker restart, aiokafka was seen to mark the coordinator
    dead and never look for it again, the loop fetching nothing for good while the
    events waited in the broker."""

    def __init__(self) -> None:
        self._since: float | None = None

    def check(self, member: bool) -> None:
        """Raises KafkaConnectionError (which the loops take as a lost broker) once the
        consumer has been out of its group for ``STUCK_OUT_OF_GROUP_SECONDS``."""
        if member:
            self._since = None
            return
        now = time.monotonic()
        if self._since is None:
            self._since = now
        elif now - self._since > STUCK_OUT_OF_GROUP_SECONDS:
            self._since = None
            raise KafkaConnectionError(
                f"out of its group for {STUCK_OUT_OF_GROUP_SECONDS:g} s; it starts again"
            )


async def stop_client(client: AIOKafkaConsumer | AIOKafkaProducer | None, what: str) -> None:
    """Stops ``client`` (none: nothing to stop) within ``CLIENT_STOP_SECONDS``; what keeps
    it from stopping cleanly is logged, never raised, except the cancellation of the
    caller itself."""
    if client is None:
        return
    try:
        async with asyncio.timeout(CLIENT_STOP_SECONDS):
            await client.stop()
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise
        log.warning("%s did not stop cleanly: a task of its own was cancelled", what)
    except TimeoutError:
        log.warning("%s did not stop within %g s; left behind", what, CLIENT_STOP_SECONDS)
    except KafkaError as exc:
        log.warning("%s did not stop cleanly: %s", what, exc)


# ApiVersions v0 (api key 18), correlation id 1, client id "lodestar-probe": the request
# every Kafka client sends first, so every broker answers it.
_PROBE_CLIENT_ID = b"lodestar-probe"
_PROBE_REQUEST = struct.pack(">hhih", 18, 0, 1, len(_PROBE_CLIENT_ID)) + _PROBE_CLIENT_ID
_PROBE_FRAME = struct.pack(">i", len(_PROBE_REQUEST)) + _PROBE_REQUEST


async def broker_reachable(bootstrap_servers: str, timeout: float = 2.0) -> bool:
    """True when at least one bootstrap server answers a Kafka request within
    ``timeout``. A connection alone is not enough: a frozen broker's port still accepts
    them, and readiness said "ok" through a broker that answered nothing."""
    for server in bootstrap_servers.split(","):
        host, _, port = server.strip().rpartition(":")
        writer: asyncio.StreamWriter | None = None
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(host, int(port))
                writer.write(_PROBE_FRAME)
                await writer.drain()
                size, correlation_id = struct.unpack(">ii", await reader.readexactly(8))
            if correlation_id == 1 and size >= 4:
                return True
        except (OSError, TimeoutError, ValueError, asyncio.IncompleteReadError):
            continue
        finally:
            if writer is not None:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
    return False


__all__ = [
    "AIOKafkaConsumer",
    "AIOKafkaProducer",
    "KafkaError",
    "broker_reachable",
    "ensure_topics",
    "make_consumer",
    "make_producer",
    "stop_client",
]
