"""Migrations as deploys run them: ``python -m shared.migrations``, maybe twice at once."""

from __future__ import annotations

import asyncio
import os
import sys

from tests.conftest import FreshDatabase


async def test_two_replicas_migrating_one_schema_at_once_both_succeed(
    fresh_database: FreshDatabase,
) -> None:
    """Each replica's init container migrates on a first deploy; the second to come
    waits for the first and finds the schema at head (it raised DuplicateTable)."""
    url = await fresh_database()

    async def migrate() -> tuple[int, bytes]:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "shared.migrations",
            "gateway",
            "metrics",
            env={**os.environ, "DATABASE_URL": url},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await process.communicate()
        return process.returncode or 0, output

    results = await asyncio.gather(migrate(), migrate(), migrate())
    for code, output in results:
        assert code == 0, output.decode()[-2000:]
        assert b"metrics: migrated to head" in output
