"""Every query of the push API, on one asyncpg connection inside the caller's transaction."""

from __future__ import annotations

from typing import Any

import asyncpg
import orjson

OUTBOX_CHANNEL = "ingest_outbox"
OUTBOX_COLUMNS = (
    "tenant_id",
    "event_id",
    "version",
    "event_type",
    "topic",
    "payload",
    "traceparent",
)


class EventRepository:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def claim_idempotency_key(self, tenant_id: str, key: str, request_hash: str) -> bool:
        """True when this request is the key's first; a concurrent twin waits on the row lock."""
        row = await self.conn.fetchrow(
            """
            INSERT INTO idempotency_keys (tenant_id, key, request_hash)
            VALUES ($1, $2, $3)
            ON CONFLICT (tenant_id, key) DO NOTHING
            RETURNING key
            """,
            tenant_id,
            key,
            request_hash,
        )
        return row is not None

    async def stored_answer(self, tenant_id: str, key: str) -> asyncpg.Record | None:
        return await self.conn.fetchrow(
            "SELECT request_hash, status, response FROM idempotency_keys "
            "WHERE tenant_id = $1 AND key = $2",
            tenant_id,
            key,
        )

    async def store_answer(
        self, tenant_id: str, key: str, status: int, body: dict[str, Any]
    ) -> None:
        await self.conn.execute(
            "UPDATE idempotency_keys SET status = $3, response = $4::jsonb "
            "WHERE tenant_id = $1 AND key = $2",
            tenant_id,
            key,
            status,
            orjson.dumps(body).decode(),
        )

    async def accept_versions(
        self, tenant_id: str, event_ids: list[str], versions: list[int]
    ) -> set[str]:
        """Records each event's version when it is new or higher; returns the accepted ids."""
        rows = await self.conn.fetch(
            """
            INSERT INTO event_versions AS ev (tenant_id, event_id, version)
            SELECT $1, e.event_id, e.version
            FROM unnest($2::text[], $3::int[]) AS e(event_id, version)
            ON CONFLICT (tenant_id, event_id) DO UPDATE SET version = EXCLUDED.version
            WHERE ev.version < EXCLUDED.version
            RETURNING event_id
            """,
            tenant_id,
            event_ids,
            versions,
        )
        return {row["event_id"] for row in rows}

    async def add_to_outbox(self, rows: list[tuple[Any, ...]]) -> None:
        await self.conn.copy_records_to_table("outbox", records=rows, columns=OUTBOX_COLUMNS)
        # Wakes the relay at commit; NOTIFY is transactional.
        await self.conn.execute("SELECT pg_notify($1, '')", OUTBOX_CHANNEL)

    async def pending_count(self, tenant_id: str) -> int:
        count = await self.conn.fetchval(
            "SELECT count(*) FROM outbox WHERE tenant_id = $1 AND sent_at IS NULL", tenant_id
        )
        return int(count)
