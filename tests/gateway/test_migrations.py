"""Export archives move into parts and back, byte for byte."""

from __future__ import annotations

import asyncio
import secrets

from alembic import command

from shared.migrations import alembic_config, upgrade
from tests.conftest import FreshDatabase, schema_connection


async def test_an_archive_kept_in_its_row_moves_into_parts_and_back(
    fresh_database: FreshDatabase,
) -> None:
    url = await fresh_database()
    await asyncio.to_thread(upgrade, "gateway", url, "0004")
    archive = secrets.token_bytes(2 * 1024 * 1024 + 10)
    async with schema_connection(url, "gateway") as conn:
        await conn.execute(
            "INSERT INTO exports (id, tenant_id, requested_by, status, archive) "
            "VALUES ('ex_1', 't1', 'test', 'ready', $1), ('ex_2', 't1', 'test', 'failed', NULL)",
            archive,
        )
        await asyncio.to_thread(upgrade, "gateway", url)
        parts = await conn.fetch("SELECT * FROM export_parts ORDER BY part")
        assert [(p["export_id"], p["tenant_id"], p["part"]) for p in parts] == [
            ("ex_1", "t1", 0),
            ("ex_1", "t1", 1),
            ("ex_1", "t1", 2),
        ]
        assert b"".join(p["data"] for p in parts) == archive
        await asyncio.to_thread(command.downgrade, alembic_config("gateway", url), "0004")
        kept = await conn.fetch("SELECT id, archive FROM exports ORDER BY id")
        assert [(r["id"], r["archive"]) for r in kept] == [("ex_1", archive), ("ex_2", None)]
