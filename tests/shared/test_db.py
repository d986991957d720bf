"""The connection pool outlives the server's connections: a restart or an administrator
ending them costs at most the statement that finds out, never every request after."""

from __future__ import annotations

import asyncio
import secrets
from collections import Counter
from datetime import UTC, datetime

import asyncpg
import pytest
from sqlalchemy import text

from shared.db import CONNECTION_LOST, Database, asyncpg_dsn, rolled_back_for_concurrency
from shared.time import local_date, time_zone_names


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


async def _cross_locks(
    db: Database, attempts: int
) -> tuple[tuple[int | BaseException, ...], Counter[int]]:
    """Two transactions taking two locks in opposite orders, each holding its first when
    the other asks for it: the server gives one of them up for a deadlock."""
    first, second = (secrets.randbits(62) for _ in range(2))
    runs: Counter[int] = Counter()
    both_hold_one = asyncio.Barrier(2)

    async def crossing(mine: int, theirs: int) -> int:
        async def work(conn: asyncpg.Connection) -> int:
            runs[mine] += 1
            await conn.execute("SELECT pg_advisory_xact_lock($1)", mine)
            if runs[mine] == 1:
                await both_hold_one.wait()
            await conn.execute("SELECT pg_advisory_xact_lock($1)", theirs)
            return mine

        return await db.transact(work, attempts=attempts)

    outcomes = await asyncio.gather(
        crossing(first, second), crossing(second, first), return_exceptions=True
    )
    return outcomes, runs


async def test_a_transaction_given_up_for_a_deadlock_runs_again(database_url: str) -> None:
    db = Database(database_url, "metrics", pool_size=2)
    try:
        outcomes, runs = await _cross_locks(db, attempts=4)
    finally:
        await db.dispose()
    assert all(isinstance(outcome, int) for outcome in outcomes), outcomes
    # The one the server gave up on ran once more, after the other had committed.
    assert sorted(runs.values()) == [1, 2]


async def test_the_last_attempt_given_up_for_a_deadlock_reaches_the_caller(
    database_url: str,
) -> None:
    db = Database(database_url, "metrics", pool_size=2)
    try:
        outcomes, runs = await _cross_locks(db, attempts=1)
        failures = [o for o in outcomes if isinstance(o, BaseException)]
        assert len(failures) == 1 and rolled_back_for_concurrency(failures[0])
        assert sorted(runs.values()) == [1, 1]

        # Any other failure is never run again.
        async def broken(conn: asyncpg.Connection) -> None:
            runs[0] += 1
            await conn.execute("SELECT no_such_column FROM pg_class")

        with pytest.raises(asyncpg.UndefinedColumnError):
            await db.transact(broken)
        assert runs[0] == 1
    finally:
        await db.dispose()


async def test_python_dates_every_instant_as_postgresql_does(database_url: str) -> None:
    """Facts are dated in Python as they arrive, and in PostgreSQL again when a store's
    zone changes: both must read one time-zone release. The system's older files once
    put a Vancouver store's 07:30 UTC on 28 November here and on the 29th there."""
    # Every hour of days around the clock changes, in winter and in summer: a zone that
    # differs differs for an hour or so a day (Winnipeg from 05:00 UTC in winter).
    instants = [
        datetime(year, month, day, hour, 30, tzinfo=UTC)
        for year in (2026, 2027)
        for month, day in ((1, 15), (3, 9), (3, 30), (7, 1), (10, 26), (11, 2), (12, 1))
        for hour in range(24)
    ]
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        rows = await conn.fetch(
            "SELECT z.name, i.at, (i.at AT TIME ZONE z.name)::date AS day "
            "FROM unnest($1::text[]) AS z(name) CROSS JOIN unnest($2::timestamptz[]) AS i(at) "
            "WHERE z.name IN (SELECT name FROM pg_timezone_names)",
            sorted(time_zone_names()),
            instants,
        )
    finally:
        await conn.close()
    assert {row["name"] for row in rows} >= {"America/Vancouver", "Africa/Casablanca"}
    differing = [
        (row["name"], row["at"].isoformat(), row["day"])
        for row in rows
        if local_date(row["at"], "US", row["name"]) != row["day"]
    ]
    assert differing == []


async def test_a_connection_left_in_a_transaction_never_goes_back_to_the_pool(
    database_url: str,
) -> None:
    """A download the client hung up on is cancelled mid-transaction: its connection was
    pooled still in it, and every later request drawing it failed (read-only, aborted)."""
    name = f"left-open-{secrets.token_hex(3)}"
    db = Database(database_url, "metrics", pool_size=1, application_name=name)
    try:
        with pytest.raises(asyncio.CancelledError):
            async with db.raw_connection() as conn:
                transaction = conn.transaction(isolation="repeatable_read", readonly=True)
                await transaction.start()
                raise asyncio.CancelledError
        for _ in range(3):
            async with db.raw_connection() as conn:
                assert not conn.is_in_transaction()
                await conn.execute("CREATE TEMP TABLE IF NOT EXISTS written (n int)")
    finally:
        await db.dispose()


async def test_a_failed_statements_error_names_no_parameter(database_url: str) -> None:
    """A 500's log line keeps the error: its parameters held password and secret hashes."""
    db = Database(database_url, "metrics", pool_size=1)
    try:
        async with db.session() as session:
            with pytest.raises(Exception) as failed:
                await session.execute(
                    text("SELECT 1 / 0 WHERE CAST(:hash AS text) IS NOT NULL"),
                    {"hash": "$argon2id$secret-hash"},
                )
        assert "secret-hash" not in str(failed.value)
        assert "hidden due to hide_parameters" in str(failed.value)
    finally:
        await db.dispose()
