"""Kafka clients stop, whatever became of their broker."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from devstack.embedded import EmbeddedBroker, free_port
from shared import erasure, kafka
from shared.kafka import ensure_topics, make_consumer, make_producer, stop_client
from shared.settings import ServiceSettings
from tests.conftest import broker_started_again


async def test_a_consumer_whose_broker_is_gone_stops_without_raising(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    broker = EmbeddedBroker(free_port(), tmp_path / "tansu.log")
    bootstrap = await asyncio.to_thread(broker.start)
    topic = f"gone.{secrets.token_hex(4)}"
    try:
        await ensure_topics(bootstrap, [topic])
        consumer = make_consumer(bootstrap, [topic], f"g-{secrets.token_hex(4)}", 100)
        await consumer.start()
        await consumer.getmany(timeout_ms=1000)
    finally:
        await asyncio.to_thread(broker.stop)
    # A fetch fails and waits to retry: aiokafka's own stop() raised CancelledError here.
    await asyncio.sleep(1)
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="shared.kafka"):
        await stop_client(consumer, "test consumer")
    assert time.monotonic() - started < kafka.CLIENT_STOP_SECONDS + 5


async def test_a_producer_stopping_on_a_frozen_broker_is_not_cut_short(tmp_path: Path) -> None:
    broker = EmbeddedBroker(free_port(), tmp_path / "tansu.log")
    bootstrap = await asyncio.to_thread(broker.start)
    topic = f"frozen.{secrets.token_hex(4)}"
    assert broker.pid is not None
    try:
        await ensure_topics(bootstrap, [topic])
        producer = make_producer(bootstrap, linger_ms=0)
        await producer.start()
        await (await producer.send(topic, b"delivered", key=b"k"))
        os.kill(broker.pid, signal.SIGSTOP)
        undelivered = await producer.send(topic, b"in flight", key=b"k")
        started = time.monotonic()
        await stop_client(producer, "test producer")
        waited = time.monotonic() - started
    finally:
        os.kill(broker.pid, signal.SIGCONT)
        await asyncio.to_thread(broker.stop)
    # It gave up on its record by itself (its request timeout), rather than being left
    # behind with the record still in flight, to be delivered beside its successor's.
    assert undelivered.done()
    assert waited < kafka.CLIENT_STOP_SECONDS


class _NeverStops:
    async def stop(self) -> None:
        await asyncio.Event().wait()


async def test_a_client_that_never_stops_is_left_behind_after_the_limit(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(kafka, "CLIENT_STOP_SECONDS", 0.2)
    with caplog.at_level(logging.WARNING, logger="shared.kafka"):
        await stop_client(_NeverStops(), "stuck producer")
    assert "stuck producer did not stop within 0.2 s; left behind" in caplog.text


async def test_the_callers_own_cancellation_still_cancels_it() -> None:
    task = asyncio.create_task(stop_client(_NeverStops(), "stuck producer"))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_cluster_that_declares_its_topics_is_left_to_create_them(
    kafka_bootstrap: str, caplog: pytest.LogCaptureFixture
) -> None:
    topic = f"lodestar.test-declared-{secrets.token_hex(4)}.v1"
    with caplog.at_level(logging.WARNING, logger="shared.kafka"):
        assert await ensure_topics(kafka_bootstrap, [topic], create=False) == [topic]
    assert "topics missing, left for the cluster to create" in caplog.text
    # Still missing: created only when asked.
    assert await ensure_topics(kafka_bootstrap, [topic], create=False) == [topic]
    assert await ensure_topics(kafka_bootstrap, [topic]) == [topic]
    assert await ensure_topics(kafka_bootstrap, [topic], create=False) == []


def _broker_of_its_own(tmp_path: Path, prefix: str) -> tuple[EmbeddedBroker, ServiceSettings]:
    """A broker no other test shares (it is killed), and settings naming it."""
    broker = EmbeddedBroker(free_port(), tmp_path / "first.log")
    settings = ServiceSettings.model_validate(
        {"KAFKA_BOOTSTRAP_SERVERS": broker.start(), "LODESTAR_TOPIC_PREFIX": prefix}
    )
    return broker, settings


async def _restarted_empty(broker: EmbeddedBroker, tmp_path: Path) -> EmbeddedBroker:
    """The broker killed and started again on its port, as the launcher does: empty."""
    assert broker.pid is not None
    os.kill(broker.pid, signal.SIGKILL)
    broker.stop()
    return await broker_started_again(broker.port, tmp_path / "second.log")


async def test_an_erasure_listener_makes_its_topics_again_after_the_broker_lost_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The embedded broker restarts empty: a listener still connected waited on topics
    that no longer existed, and erasures stayed unconfirmed."""
    monkeypatch.setattr(erasure, "TOPICS_RECHECK_SECONDS", 0.5)
    broker, settings = _broker_of_its_own(tmp_path, "relisten.")
    bootstrap = settings.kafka_bootstrap_servers
    topics = erasure.erasure_topics(settings.topic_prefix)
    handled: list[Any] = []

    async def handle(records: Any) -> None:
        handled.extend(records)

    listener = erasure.TopicListener(
        settings, erasure.ERASURE_TOPIC, "relisten-group", handle, "relisten"
    )
    listener.start()
    try:
        await _until(lambda: ensure_topics(bootstrap, topics, create=False), [])
        broker = await _restarted_empty(broker, tmp_path)
        await _until(lambda: ensure_topics(bootstrap, topics, create=False), [])
    finally:
        await listener.stop()
        broker.stop()


async def test_an_erasure_listener_whose_commit_hangs_on_a_lost_topic_reconnects(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The broker restarted empty while a record was being handled: aiokafka retried
    its commit to the lost topic without end, and the topics were never made again."""
    monkeypatch.setattr(erasure, "COMMIT_SECONDS", 1.0)
    broker, settings = _broker_of_its_own(tmp_path, "recommit.")
    bootstrap = settings.kafka_bootstrap_servers
    topics = erasure.erasure_topics(settings.topic_prefix)
    topic = settings.topic_prefix + erasure.ERASURE_TOPIC
    restarted = asyncio.Event()
    handled: list[bytes] = []

    async def handle(records: Any) -> None:
        handled.extend(r.value for r in records)
        if len(handled) == 1:
            await restarted.wait()

    listener = erasure.TopicListener(settings, erasure.ERASURE_TOPIC, "recommit", handle, "rc")
    listener.start()
    try:
        await _until(lambda: ensure_topics(bootstrap, topics, create=False), [])
        # Handled, and held there while the broker restarts.
        await published_and_handled(bootstrap, topic, b"first", handled)
        broker = await _restarted_empty(broker, tmp_path)
        restarted.set()
        await _until(lambda: ensure_topics(bootstrap, topics, create=False), [])
        # And it reads on: a record published now is handled.
        await published_and_handled(bootstrap, topic, b"second", handled)
    finally:
        await listener.stop()
        broker.stop()


async def _until(check: Any, wanted: Any, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while (found := await check()) != wanted:
        assert time.monotonic() < deadline, found
        await asyncio.sleep(0.2)


def test_a_group_watch_restarts_a_consumer_out_of_its_group_too_long(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(kafka, "STUCK_OUT_OF_GROUP_SECONDS", 0.2)
    watch = kafka.GroupWatch()
    watch.check(member=False)
    time.sleep(0.1)
    watch.check(member=True)  # back in its group: the time out starts again
    watch.check(member=False)
    time.sleep(0.1)
    watch.check(member=False)
    time.sleep(0.15)
    with pytest.raises(kafka.KafkaConnectionError, match="out of its group"):
        watch.check(member=False)
    watch.check(member=False)  # and counts afresh for the new consumer


async def test_an_erasure_listener_left_out_of_its_group_starts_its_consumer_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a broker restart aiokafka was seen to mark the group's coordinator dead and
    never look for it again: the listener fetched nothing, for good."""
    monkeypatch.setattr(kafka, "STUCK_OUT_OF_GROUP_SECONDS", 1.0)
    wedged = True
    monkeypatch.setattr(erasure, "in_its_group", lambda consumer: not wedged)
    broker, settings = _broker_of_its_own(tmp_path, "rejoin.")
    bootstrap = settings.kafka_bootstrap_servers
    topic = settings.topic_prefix + erasure.ERASURE_TOPIC
    handled: list[bytes] = []

    async def handle(records: Any) -> None:
        handled.extend(r.value for r in records)

    listener = erasure.TopicListener(settings, erasure.ERASURE_TOPIC, "rejoin", handle, "rj")
    listener.start()
    try:
        deadline = time.monotonic() + 30
        while listener._consumer is None:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)
        first = listener._consumer
        while listener._consumer in (first, None):
            assert time.monotonic() < deadline, "never started again"
            await asyncio.sleep(0.1)
        wedged = False
        await published_and_handled(bootstrap, topic, b"after", handled)
    finally:
        await listener.stop()
        broker.stop()


async def published_and_handled(
    bootstrap: str, topic: str, value: bytes, handled: list[bytes]
) -> None:
    """Publishes ``value`` and waits until a listener's handler has had it."""
    producer = make_producer(bootstrap)
    try:
        await producer.start()
        await producer.send_and_wait(topic, value)
        deadline = time.monotonic() + 30
        while value not in handled:
            assert time.monotonic() < deadline, handled
            await asyncio.sleep(0.2)
    finally:
        await stop_client(producer, "test producer")
