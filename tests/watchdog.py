"""A test that hangs ends the run within minutes, saying where it hung.

Without it, one test waiting for ever (a Kafka client that never finishes stopping, a
server that never answers) holds CI until its own limit and prints nothing useful. After
``LODESTAR_TEST_TIMEOUT`` seconds (300 by default) a test's threads and the event loop's
tasks are written to stderr, then the run is interrupted as by Ctrl-C, so the session's
servers are still stopped. A run that does not stop within a minute of that exits.
"""

from __future__ import annotations

import asyncio
import faulthandler
import os
import signal
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

TEST_TIMEOUT_SECONDS = float(os.environ.get("LODESTAR_TEST_TIMEOUT", "300"))
STOP_GRACE_SECONDS = 60.0

# The session's event loop, for listing its tasks from the watchdog's thread.
_session_loop: asyncio.AbstractEventLoop | None = None
_config: pytest.Config | None = None


def pytest_configure(config: pytest.Config) -> None:
    global _config
    _config = config
    # A run started in the background (`cmd &` in a script) inherits SIGINT ignored,
    # and the interrupt below would then never arrive.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    # A run ended with SIGTERM (a CI runner's cancel, `kill`) stops as by Ctrl-C: killed
    # outright, it left the session's embedded PostgreSQL and broker running.
    signal.signal(signal.SIGTERM, _interrupted_by_signal)


def _interrupted_by_signal(signum: int, frame: Any) -> None:
    os.kill(os.getpid(), signal.SIGINT)


@pytest.fixture(scope="session", autouse=True)
async def _remember_the_event_loop() -> AsyncIterator[None]:
    global _session_loop
    _session_loop = asyncio.get_running_loop()
    yield
    _session_loop = None


def describe_hang(nodeid: str, timeout: float, out: Any = None) -> None:
    """Writes every thread's stack and every task of the session's loop to ``out``."""
    out = out or sys.stderr
    print(f"\n\n{nodeid} is still running after {timeout:.0f} s; its stacks:", file=out)
    out.flush()
    faulthandler.dump_traceback(file=out, all_threads=True)
    loop = _session_loop
    if loop is not None:
        # all_tasks copies its set itself, retrying while another thread changes it.
        for task in asyncio.all_tasks(loop):
            print(f"--- task {task.get_name()}: {task!r}", file=out)
            task.print_stack(limit=30, file=out)
    out.flush()


def _interrupt(nodeid: str) -> None:
    # The test's output is captured to a file that an interrupted run never shows.
    capture = _config.pluginmanager.getplugin("capturemanager") if _config else None
    if capture is not None:
        capture.suspend_global_capture(in_=False)
    describe_hang(nodeid, TEST_TIMEOUT_SECONDS)
    # asyncio's runner takes SIGINT as Ctrl-C: the running test is cancelled and pytest
    # stops the session, tearing its fixtures (and servers) down.
    os.kill(os.getpid(), signal.SIGINT)
    last_resort = threading.Timer(STOP_GRACE_SECONDS, os._exit, args=(1,))
    last_resort.daemon = True
    last_resort.start()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    timer = threading.Timer(TEST_TIMEOUT_SECONDS, _interrupt, args=(item.nodeid,))
    timer.daemon = True
    timer.start()
    try:
        return (yield)
    finally:
        timer.cancel()
