"""Background loops stop, even where one cancellation gets lost."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys

import pytest

from shared.tasks import every, stop_task


async def _loop_waiting_with_wait_for(wake: asyncio.Event, rounds: list[int]) -> None:
    while True:
        wake.clear()
        rounds.append(1)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), 5)


async def test_a_loop_whose_cancellation_was_dropped_is_stopped_anyway() -> None:
    wake = asyncio.Event()
    rounds: list[int] = []
    task = asyncio.create_task(_loop_waiting_with_wait_for(wake, rounds))
    await asyncio.sleep(0.05)
    # A wake-up and a stop in the same step: wait_for returns the wake-up's result.
    wake.set()
    task.cancel()
    await asyncio.sleep(0.05)
    if sys.version_info < (3, 12):
        assert not task.done(), "Python 3.11's wait_for no longer drops this cancellation"
        assert len(rounds) == 2
    await asyncio.wait_for(stop_task(task), 5)
    assert task.done()


async def test_a_task_that_ended_by_itself_is_left_as_it_ended() -> None:
    async def fails() -> None:
        raise RuntimeError("boom")

    task = asyncio.create_task(fails())
    await asyncio.sleep(0)
    await stop_task(task)
    assert isinstance(task.exception(), RuntimeError)
    await stop_task(None)


async def test_a_round_that_cannot_read_is_said_and_the_next_tries_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rounds: list[int] = []
    third = asyncio.Event()

    async def work() -> None:
        rounds.append(len(rounds))
        if len(rounds) == 1:
            raise ConnectionRefusedError("database away")
        if len(rounds) == 2:
            raise KeyError("a fault of ours")
        if len(rounds) == 3:
            third.set()

    with caplog.at_level(logging.WARNING, logger="shared.tasks"):
        task = every(0.01, work, "test-every", "the test's rows")
        await asyncio.wait_for(third.wait(), 5)
        await stop_task(task)
    assert task.cancelled()
    assert "the test's rows cannot be read: database away" in caplog.text
    assert "reading the test's rows failed" in caplog.text and "a fault of ours" in caplog.text
