"""Database access: one async engine per service, bound to the service's own schema.

Each service owns one PostgreSQL schema (``gateway``, ``ingest``, ``metrics``,
``targets``) in the same database; its connections put that schema first on the
``search_path`` so no service reads another's tables by accident.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg
import orjson
from sqlalchemy import event
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)


def sqlalchemy_url(database_url: str) -> str:
    """The asyncpg dialect URL for a plain ``postgresql://`` URL (any driver suffix replaced)."""
    parts = urlsplit(database_url)
    scheme = "postgresql+asyncpg"
    return urlunsplit((scheme, parts.netloc, parts.path, parts.query, parts.fragment))


def asyncpg_dsn(database_url: str) -> str:
    """The DSN asyncpg itself accepts (no SQLAlchemy driver suffix)."""
    parts = urlsplit(database_url)
    return urlunsplit(("postgresql", parts.netloc, parts.path, parts.query, parts.fragment))


def with_database(database_url: str, database: str) -> str:
    """The same server URL pointing at another database name."""
    parts = urlsplit(database_url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{database}", parts.query, parts.fragment))


def with_query(database_url: str, **params: str) -> str:
    parts = urlsplit(database_url)
    query = dict(parse_qsl(parts.query))
    query.update(params)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), parts.fragment))


# What a connection the server ended (a restart, an administrator) raises, depending on
# when the client learns of it: such a connection is no use any more.
CONNECTION_LOST: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.InternalClientError,
    asyncpg.exceptions.OperatorInterventionError,
)
# How long a new connection may take to open. asyncpg waits 60 s by default, and a
# frozen server accepts the socket and then answers nothing.
CONNECT_TIMEOUT_SECONDS = 10.0
# SQLSTATE classes of a server that could not take a statement just now: connection
# exceptions (08), insufficient resources (53: too many connections, a full disk) and
# operator intervention (57: shutting down, starting up, a statement cancelled).
_UNAVAILABLE_STATES = ("08", "53", "57")


# A pooled connection the server's death left mid-operation ("cannot switch to state
# 15; another operation is in progress"), or closed under a statement: the database
# went away, and a new connection will do once it is back. (Not every InterfaceError:
# most are a statement of ours the driver refuses.)
_BROKEN_CONNECTION = (
    asyncpg.exceptions.InternalClientError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
)


def database_unavailable(exc: BaseException) -> bool:
    """True when the database did not answer, or could not take the request now: the
    same request, sent again in a moment, may pass.

    Besides the server's own codes: a refused or broken socket (``OSError``), a
    connection or statement that ran out of time (``TimeoutError``), and a pool whose
    every connection stayed busy for its whole timeout."""
    if isinstance(exc, (OSError, TimeoutError, PoolTimeout)):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    if isinstance(exc, _BROKEN_CONNECTION) or isinstance(
        getattr(exc, "orig", None), _BROKEN_CONNECTION
    ):
        return True
    state = sqlstate(exc)
    if state is not None and state[:2] in _UNAVAILABLE_STATES:
        return True
    # Leaving a transaction's block on a connection the server's death closed raises
    # anew ("cannot call Transaction.__aexit__(): the underlying connection is
    # closed"), over the error that told of it.
    driver_error = exc if isinstance(exc, asyncpg.InterfaceError) else getattr(exc, "orig", None)
    return (
        isinstance(driver_error, asyncpg.InterfaceError)
        and exc.__context__ is not None
        and database_unavailable(exc.__context__)
    )


def rolled_back_for_concurrency(exc: BaseException) -> bool:
    """SQLSTATE class 40: a deadlock or a serialization failure. Nothing of the
    transaction was kept, and sent again it passes."""
    state = sqlstate(exc)
    return state is not None and state.startswith("40")


def sqlstate(exc: BaseException) -> str | None:
    """The SQLSTATE of a database error, from asyncpg itself or through SQLAlchemy's
    adapter of it (``orig``)."""
    state = getattr(exc, "sqlstate", None) or getattr(getattr(exc, "orig", None), "sqlstate", None)
    return state if isinstance(state, str) else None


T = TypeVar("T")
# A push that met a deadlock is run again this many times in all before its caller is
# told to send it again (503): concurrent pushes of the same events in different orders
# meet one often, and each retry is cheap.
CONTENDED_ATTEMPTS = 4


class Database:
    """An engine and session factory whose connections see ``schema`` first."""

    def __init__(
        self,
        database_url: str,
        schema: str,
        pool_size: int = 20,
        application_name: str | None = None,
        statement_timeout_seconds: float | None = None,
    ) -> None:
        """``statement_timeout_seconds`` bounds each statement on the client's side, so
        that it also ends when the server is frozen and cancels nothing by itself; none
        by default, as a consumer's batch or an erasure may rightly take long."""
        self.schema = schema
        self.url = database_url
        self.engine: AsyncEngine = create_async_engine(
            sqlalchemy_url(database_url),
            # Every connection is kept: an overflow connection is closed as soon as it
            # is returned, and under a burst each request then paid for a new server
            # process. Past the pool, requests wait their turn.
            pool_size=pool_size,
            max_overflow=0,
            # No ping before each checkout: it costs a round trip (three, with its
            # transaction) on every request. A connection the server ended is seen closed
            # at checkout (``_discard_closed``) or fails the one statement that finds it.
            pool_pre_ping=False,
            # A failed statement's error names no parameter: they hold password and
            # secret hashes, which the 500's log line would keep.
            hide_parameters=True,
            json_deserializer=orjson.loads,
            connect_args={
                "timeout": CONNECT_TIMEOUT_SECONDS,
                "command_timeout": statement_timeout_seconds,
                "server_settings": {
                    "search_path": f"{schema},public",
                    # Names the service in pg_stat_activity.
                    "application_name": application_name or f"lodestar-{schema}",
                },
            },
        )
        event.listen(self.engine.sync_engine, "checkout", _discard_closed)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A unit of work: committed when the block ends normally, rolled back otherwise."""
        async with self.sessions() as session:
            try:
                yield session
                await session.commit()
            except BaseException:
                await session.rollback()
                raise

    @asynccontextmanager
    async def raw_connection(self) -> AsyncIterator[asyncpg.Connection]:
        """A pooled asyncpg connection for COPY and other driver-level work on the hot path."""
        async with self.engine.connect() as conn:
            raw = await conn.get_raw_connection()
            driver: Any = raw.driver_connection
            try:
                yield driver
            except BaseException as exc:
                # SQLAlchemy never sees what fails on the driver itself: a connection the
                # server ended would go back to the pool and fail every request after.
                if driver.is_closed() or isinstance(exc, CONNECTION_LOST):
                    await conn.invalidate()
                raise
            finally:
                if not driver.is_closed() and driver.is_in_transaction():
                    # A transaction left open (its rollback cancelled with a download the
                    # client hung up on) would be the next borrower's, failing requests of
                    # every tenant: closed at once (no await a cancellation could cut
                    # short), it is replaced when next drawn from the pool.
                    driver.terminate()

    async def transact(
        self, work: Callable[[asyncpg.Connection], Awaitable[T]], attempts: int = CONTENDED_ATTEMPTS
    ) -> T:
        """``work`` in a transaction of a raw connection, committed when it returns.

        A transaction the server rolled back for a concurrent one's sake (a deadlock, a
        serialization failure) kept nothing, so it runs again, after a short random
        pause that lets the two part ways, up to ``attempts`` times in all; the caller
        sees the failure only after the last. ``work`` must therefore keep nothing of
        an attempt outside the transaction."""
        attempt = 1
        while True:
            try:
                async with self.raw_connection() as conn, conn.transaction():
                    return await work(conn)
            except Exception as exc:
                if attempt >= attempts or not rolled_back_for_concurrency(exc):
                    raise
            await asyncio.sleep(random.uniform(0.005, 0.025) * attempt)
            attempt += 1

    async def ping(self) -> None:
        async with self.raw_connection() as conn:
            await conn.fetchval("SELECT 1")

    async def dispose(self) -> None:
        await self.engine.dispose()


def _discard_closed(dbapi_connection: Any, record: Any, proxy: Any) -> None:
    """A pooled connection the server has ended (a restart, an administrator) is closed
    by the time it is checked out again: the pool opens another in its place."""
    if dbapi_connection.driver_connection.is_closed():
        raise DisconnectionError("the server ended this connection")


def row_count(status: str) -> int:
    """The row count of a command's status as asyncpg returns it ("INSERT 0 12")."""
    return int(status.split()[-1])


# One lock per tenant and schema, held by every transaction that writes a tenant's
# rows from outside a request's own check (a push, a batch of events applied) in shared
# mode, and by its erasure exclusively.
TENANT_LOCK = "hashtextextended($1 || '/' || t, 0)"


async def hold_tenants(conn: asyncpg.Connection, schema: str, tenant_ids: Iterable[str]) -> None:
    """Until the transaction ends: an erasure of any of these tenants waits for this
    write, so it deletes what the write leaves; a write that comes after the erasure
    waits for it, and must then see the tenant erased (the caller checks, once this
    returns, the set of erased tenants its service keeps, which the erasure fills first)."""
    await conn.execute(
        f"SELECT pg_advisory_xact_lock_shared({TENANT_LOCK}) "
        "FROM unnest($2::text[]) AS t ORDER BY t",
        schema,
        sorted(set(tenant_ids)),
    )
