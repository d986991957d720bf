"""Accepted events learn their store and type from the outbox when the columns arrive."""

from __future__ import annotations

import asyncio

import orjson
from alembic import command

from shared.migrations import alembic_config, upgrade
from tests.conftest import FreshDatabase, schema_connection


def message(version: int, store: str) -> bytes:
    source = {"platform": "amazon", "store_id": store, "marketplace": "US"}
    return orjson.dumps({"event_id": "e1", "version": version, "source": source})


async def test_event_versions_learn_their_store_and_type_from_the_outbox(
    fresh_database: FreshDatabase,
) -> None:
    url = await fresh_database()
    await asyncio.to_thread(upgrade, "ingest", url, "0004")
    async with schema_connection(url, "ingest") as conn:
        await conn.execute("INSERT INTO event_versions VALUES ('t1', 'e1', 2), ('t1', 'gone', 1)")
        await conn.executemany(
            "INSERT INTO outbox (tenant_id, event_id, version, event_type, topic, payload) "
            "VALUES ('t1', 'e1', $1, 'order_line', 'lodestar.order_line.v1', $2)",
            [(1, message(1, "old-store")), (2, message(2, "acme-us"))],
        )
        await asyncio.to_thread(upgrade, "ingest", url)
        rows = await conn.fetch(
            "SELECT event_id, store_id, marketplace FROM event_versions ORDER BY event_id"
        )
        types = await conn.fetch("SELECT event_id, event_type FROM event_versions ORDER BY 1")
        assert [tuple(r.values()) for r in types] == [("e1", "order_line"), ("gone", None)]
        # An event the outbox no longer holds stays unknown (and so out of a grant's reach).
        assert [tuple(r.values()) for r in rows] == [("e1", "acme-us", "US"), ("gone", None, None)]
        await asyncio.to_thread(command.downgrade, alembic_config("ingest", url), "0004")
        columns = await conn.fetch(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = 'ingest' AND table_name = 'event_versions'"
        )
        assert {r["column_name"] for r in columns} == {"tenant_id", "event_id", "version"}
