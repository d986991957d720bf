"""The suite's watchdog: a hung test stops the run and says where it hung."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

HANGING_TESTS = """
import asyncio


async def test_waits_for_an_event_nobody_sets() -> None:
    await asyncio.Event().wait()


def test_never_reached() -> None:
    raise AssertionError("the run stops at the hung test, before this one")
"""


STOPPED_TESTS = """
import asyncio
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def server():
    yield
    Path("stopped").write_text("the session's servers were stopped")


async def test_runs_until_terminated(server) -> None:
    Path("started").write_text("")
    await asyncio.Event().wait()
"""


def pytest_command() -> list[str]:
    return [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "-p",
        "tests.watchdog",
        "-o",
        "asyncio_mode=auto",
        "-o",
        "asyncio_default_test_loop_scope=session",
        "-o",
        "asyncio_default_fixture_loop_scope=session",
    ]


def test_a_run_ended_by_sigterm_stops_its_session_servers(tmp_path: Path) -> None:
    (tmp_path / "test_stopped.py").write_text(STOPPED_TESTS)
    run = subprocess.Popen(
        [*pytest_command(), "test_stopped.py"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not (tmp_path / "started").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    run.send_signal(signal.SIGTERM)
    output, _ = run.communicate(timeout=60)
    assert run.returncode == 2, output
    assert (tmp_path / "stopped").exists(), output


def test_a_hung_test_is_interrupted_with_its_task_stacks(tmp_path: Path) -> None:
    (tmp_path / "test_hangs.py").write_text(HANGING_TESTS)
    run = subprocess.run(
        [*pytest_command(), "test_hangs.py"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT), "LODESTAR_TEST_TIMEOUT": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    # Interrupted (2), not passed, and the test after the hung one never ran.
    assert run.returncode == 2, run.stdout + run.stderr
    assert "KeyboardInterrupt" in run.stdout
    assert "test_never_reached" not in run.stdout
    assert "test_hangs.py::test_waits_for_an_event_nobody_sets is still running after 1 s" in (
        run.stderr
    )
    # Where the test's own task waits, not only where the event loop sleeps.
    assert "in test_waits_for_an_event_nobody_sets" in run.stderr
    assert "await asyncio.Event().wait()" in run.stderr
