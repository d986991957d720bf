"""Accepted events learn their store and type from the outbox when the columns arrive."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import orjson
from alembic import command

from shared.migrations import alembic_config, upgrade
from tests.conftest import FreshDatabase, schema_connection


def message(version: int, store: str) -> bytes:
    source = {"platform": "amazon", "store_id": store, "marketplace": "US"}
    return orjson.dumps({"event_id": "e1", "version": version, "source": source})


async def outbox_holds(
    conn: asyncpg.Connection, rows: list[tuple[str, int, str, dict[str, Any]]]
) -> None:
    """Outbox rows of tenant t1: (event id, version, type, payload)."""
    await conn.executemany(
        "INSERT INTO outbox (tenant_id, event_id, version, event_type, topic, payload) "
        "VALUES ('t1', $1, $2, $3, 'topic', $4)",
        [(e, v, t, orjson.dumps({"payload": p})) for e, v, t, p in rows],
    )


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


async def test_order_lines_learn_their_category_from_the_outbox(
    fresh_database: FreshDatabase,
) -> None:
    url = await fresh_database()
    await asyncio.to_thread(upgrade, "ingest", url, "0006")
    async with schema_connection(url, "ingest") as conn:
        await conn.execute(
            "INSERT INTO event_versions (tenant_id, event_id, version, event_type) VALUES "
            "('t1', 'lamp', 2, 'order_line'), ('t1', 'plain', 1, 'order_line'), "
            "('t1', 'gone', 1, 'order_line'), ('t1', 'fee', 1, 'fee')"
        )
        rows = [
            ("lamp", 1, "order_line", {"category": "Rugs"}),
            ("lamp", 2, "order_line", {"category": "Lamps"}),
            ("plain", 1, "order_line", {}),
            ("fee", 1, "fee", {"fee_type": "other"}),
        ]
        await outbox_holds(conn, rows)
        await asyncio.to_thread(upgrade, "ingest", url, "0007")
        found = await conn.fetch("SELECT event_id, category FROM event_versions ORDER BY 1")
        assert [tuple(r.values()) for r in found] == [
            ("fee", None), ("gone", None), ("lamp", "Lamps"), ("plain", ""),
        ]  # fmt: skip
        await asyncio.to_thread(command.downgrade, alembic_config("ingest", url), "0006")


async def test_events_learn_their_order_from_the_outbox(fresh_database: FreshDatabase) -> None:
    url = await fresh_database()
    await asyncio.to_thread(upgrade, "ingest", url, "0009")
    async with schema_connection(url, "ingest") as conn:
        await conn.execute(
            "INSERT INTO event_versions (tenant_id, event_id, version, event_type) VALUES "
            "('t1', 'line', 2, 'order_line'), ('t1', 'defect', 1, 'order_defect'), "
            "('t1', 'ad', 1, 'ad_spend'), ('t1', 'gone', 1, 'refund')"
        )
        rows = [
            ("line", 1, "order_line", {"order_id": "O-old"}),
            ("line", 2, "order_line", {"order_id": "O-1"}),
            ("defect", 1, "order_defect", {"order_id": "O-2"}),
            ("ad", 1, "ad_spend", {"sku": "LAMP"}),
        ]
        await outbox_holds(conn, rows)
        await asyncio.to_thread(upgrade, "ingest", url, "0010")
        found = await conn.fetch("SELECT event_id, order_id FROM event_versions ORDER BY 1")
        assert [tuple(r.values()) for r in found] == [
            ("ad", None), ("defect", "O-2"), ("gone", None), ("line", "O-1"),
        ]  # fmt: skip
        await asyncio.to_thread(command.downgrade, alembic_config("ingest", url), "0009")


async def test_rows_to_send_again_go_back_to_the_unsent_queue_on_the_way_down(
    fresh_database: FreshDatabase,
) -> None:
    url = await fresh_database()
    await asyncio.to_thread(upgrade, "ingest", url, "0008")
    async with schema_connection(url, "ingest") as conn:
        await conn.executemany(
            "INSERT INTO outbox (tenant_id, event_id, version, event_type, topic, payload, "
            "sent_at, resend) VALUES ('t1', $1, 1, 'fee', 'fee', '{}', now(), $2)",
            [("sent", False), ("again", True)],
        )
        await asyncio.to_thread(command.downgrade, alembic_config("ingest", url), "0007")
        unsent = await conn.fetch("SELECT event_id FROM outbox WHERE sent_at IS NULL")
        assert [r["event_id"] for r in unsent] == ["again"]


async def test_idempotency_keys_move_under_their_caller_and_back(
    fresh_database: FreshDatabase,
) -> None:
    url = await fresh_database()
    await asyncio.to_thread(upgrade, "ingest", url, "0010")
    async with schema_connection(url, "ingest") as conn:
        await conn.execute(
            "INSERT INTO idempotency_keys (tenant_id, key, request_hash) VALUES ('t1', 'k', 'old')"
        )
        await asyncio.to_thread(upgrade, "ingest", url)
        assert await conn.fetchval("SELECT caller FROM idempotency_keys") == ""
        await conn.execute(
            "INSERT INTO idempotency_keys (tenant_id, caller, key, request_hash, created_at) "
            "VALUES ('t1', 'erp erp', 'k', 'newest', now() + interval '1 second'), "
            "('t1', 'erp erp', 'other', 'alone', now())"
        )
        # Back to one key space: of the callers' keys alike, the newest stays.
        await asyncio.to_thread(command.downgrade, alembic_config("ingest", url), "0010")
        kept = await conn.fetch("SELECT key, request_hash FROM idempotency_keys ORDER BY 1")
        assert [tuple(r.values()) for r in kept] == [("k", "newest"), ("other", "alone")]


async def test_snapshots_learn_their_count_from_the_outbox(fresh_database: FreshDatabase) -> None:
    url = await fresh_database()
    await asyncio.to_thread(upgrade, "ingest", url, "0012")
    async with schema_connection(url, "ingest") as conn:
        await conn.execute(
            "INSERT INTO event_versions (tenant_id, event_id, version, event_type) VALUES "
            "('t1', 'count', 2, 'inventory_snapshot'), ('t1', 'gone', 1, 'inventory_snapshot'), "
            "('t1', 'traffic', 1, 'traffic')"
        )
        rows = [
            ("count", 1, "inventory_snapshot", {"date": "2026-02-28", "warehouse": "W0"}),
            ("count", 2, "inventory_snapshot", {"date": "2026-03-01", "warehouse": "FBA US"}),
            ("traffic", 1, "traffic", {"date": "2026-03-01", "sku": "LAMP"}),
        ]
        await outbox_holds(conn, rows)
        await asyncio.to_thread(upgrade, "ingest", url, "0013")
        found = await conn.fetch("SELECT event_id, stock_count FROM event_versions ORDER BY 1")
        # The latest version's count; one the outbox no longer holds stays unknown.
        assert [tuple(r.values()) for r in found] == [
            ("count", "2026-03-01 FBA US"), ("gone", None), ("traffic", None),
        ]  # fmt: skip
        await asyncio.to_thread(command.downgrade, alembic_config("ingest", url), "0012")
