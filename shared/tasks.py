"""Stopping a service's background loops for certain."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

log = logging.getLogger(__name__)

# How long a cancelled task is given before it is cancelled again.
CANCEL_AGAIN_SECONDS = 1.0


async def stop_task(task: asyncio.Task[Any] | None) -> None:
    """Cancels ``task`` and returns once it has ended, however it ends.

    One cancellation is not always enough. On Python 3.11 ``asyncio.wait_for`` (in our
    loops, and inside asyncpg and aiokafka) drops a cancellation that arrives in the same
    step as the result it waits for, and a loop then runs on as if never stopped: a
    service's shutdown waited for its relay for ever. The cancellation is repeated until
    the task ends.
    """
    if task is None:
        return
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=CANCEL_AGAIN_SECONDS)
    if not task.cancelled():
        # Retrieved, so asyncio does not log it as never retrieved; the loops log their
        # own failures.
        task.exception()


def every(
    seconds: float, work: Callable[[], Awaitable[None]], name: str, what: str
) -> asyncio.Task[None]:
    """Runs ``work`` every ``seconds`` (the first after a wait) until the task is
    stopped (``stop_task``). A database or connection fault is logged, saying ``what``
    cannot be read, any other with its trace, and the next round tries again."""

    async def rounds() -> None:
        while True:
            await asyncio.sleep(seconds)
            try:
                await work()
            except (SQLAlchemyError, OSError) as exc:
                log.warning("%s cannot be read: %s", what, exc)
            except Exception:
                # Any other fault too: a task that ended would leave the service on
                # stale state (keys, revocations) for the rest of its life, silently.
                log.exception("reading %s failed", what)

    return asyncio.create_task(rounds(), name=name)
