"""Database access: one async engine per service, bound to the service's own schema.

Each service owns one PostgreSQL schema (``gateway``, ``ingest``, ``metrics``,
``targets``) in the same database; its connections put that schema first on the
``search_path`` so no service reads another's tables by accident.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg
import orjson
from sqlalchemy import event
from sqlalchemy.exc import DisconnectionError
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


class Database:
    """An engine and session factory whose connections see ``schema`` first."""

    def __init__(
        self,
        database_url: str,
        schema: str,
        pool_size: int = 20,
        application_name: str | None = None,
    ) -> None:
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
            json_deserializer=orjson.loads,
            connect_args={
                "server_settings": {
                    "search_path": f"{schema},public",
                    # Names the service in pg_stat_activity.
                    "application_name": application_name or f"lodestar-{schema}",
                }
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
