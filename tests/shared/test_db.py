"""The connection pool outlives the server's connections: a restart or an administrator
ending them costs at most the statement that finds out, never every request after."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from shared.db import CONNECTION_LOST, Database, asyncpg_dsn


async def _end_connections_of(database_url: str, application_name: str) -> int:
    admin = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        ended: int = await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE application_name = $1",
            application_name,
        )
        return ended
    finally:
        await admin.close()


@pytest.mark.parametrize("noticed", [True, False], ids=["closed-seen", "closed-unseen"])
async def test_connections_the_server_ended_are_replaced(database_url: str, noticed: bool) -> None:
    name = f"pool-test-{noticed}"
    db = Database(database_url, "metrics", pool_size=3, application_name=name)
    try:
        # Every pooled connection opened, then ended by the server.
        async def hold() -> None:
            async with db.raw_connection() as conn:
                await conn.fetchval("SELECT pg_sleep(0.05)")

        await asyncio.gather(*(hold() for _ in range(3)))
        assert await _end_connections_of(database_url, name) == 3
        if noticed:
            await asyncio.sleep(0.3)  # the closed sockets reach the client first
        failures = 0
        for _ in range(6):
            try:
                await db.ping()
            except CONNECTION_LOST:
                failures += 1
        # Each dead connection fails at most the one statement that finds it dead.
        assert failures <= (0 if noticed else 3)
        await db.ping()
        async with db.session() as session:
            assert (await session.connection()).closed is False
    finally:
        await db.dispose()
