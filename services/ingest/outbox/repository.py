"""The relay's queries over the outbox."""

from __future__ import annotations

import asyncpg


class OutboxRepository:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def claim(self, limit: int) -> list[asyncpg.Record]:
        """Unsent rows in order, locked; another relay skips them instead of waiting."""
        rows: list[asyncpg.Record] = await self.conn.fetch(
            """
            SELECT id, tenant_id, topic, payload, traceparent
            FROM outbox
            WHERE sent_at IS NULL
            ORDER BY id
            LIMIT $1
            FOR UPDATE SKIP LOCKED
            """,
            limit,
        )
        return rows

    async def mark_sent(self, ids: list[int]) -> None:
        await self.conn.execute(
            "UPDATE outbox SET sent_at = now() WHERE id = ANY($1::bigint[])", ids
        )

    async def delete_sent_before(self, hours: int) -> int:
        status = await self.conn.execute(
            "DELETE FROM outbox WHERE sent_at IS NOT NULL "
            "AND sent_at < now() - make_interval(hours => $1)",
            hours,
        )
        return int(status.split()[-1])

    async def pending(self) -> int:
        return int(await self.conn.fetchval("SELECT count(*) FROM outbox WHERE sent_at IS NULL"))
