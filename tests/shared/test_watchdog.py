"""The suite's watchdog: a hung test stops the run and says where it hung."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

HANGING_TESTS = """
import asyncio


async def test_waits_for_an_event_nobody_sets() -> None:
    await asyncio.Event().wait()


def test_never_reached() -> None:
    raise AssertionError("the run stops at the hung test, before this one")
"""


def test_a_hung_test_is_interrupted_with_its_task_stacks(tmp_path: Path) -> None:
    (tmp_path / "test_hangs.py").write_text(HANGING_TESTS)
    run = subprocess.run(
        [
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
            "test_hangs.py",
        ],
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
