"""Every query over the outbox: the push writes it, the relay drains and trims it."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import asyncpg

from shared.db import row_count

# NOTIFY channel of a committed push; the relay LISTENs on it.
OUTBOX_CHANNEL = "ingest_outbox"
# The advisory lock only one relay holds at a time (any number unique in the database).
RELAY_LOCK = 0x0B0C5
OUTBOX_COLUMNS = (
    "tenant_id",
    "event_id",
    "version",
    "event_type",
    "topic",
    "payload",
    "traceparent",
    "tracestate",
)


class OutboxRepository:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def add(self, rows: list[tuple[Any, ...]]) -> None:
        """COPYs rows (in ``OUTBOX_COLUMNS`` order) and wakes the relay when they commit."""
        await self.conn.copy_records_to_table("outbox", records=rows, columns=OUTBOX_COLUMNS)
        # NOTIFY is transactional: delivered at commit, dropped on rollback.
        await self.conn.execute("SELECT pg_notify($1, '')", OUTBOX_CHANNEL)

    async def claim(self, limit: int) -> list[asyncpg.Record]:
        """The oldest unsent rows, then the newest of those to send again (see
        ``queue_again_since``), when no other relay is at work (else none).

        One relay at a time, by a lock held until the caller's transaction ends:
        locking each row instead (FOR UPDATE SKIP LOCKED) wrote every row once more
        and was a third of PostgreSQL's work per event.
        """
        if not await self.conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", RELAY_LOCK):
            return []
        # A table filled faster than autovacuum analyzes it looks nearly empty to the
        # planner, which then reads the whole backlog through a bitmap and sorts it on
        # every claim. Scanning the unsent index in order stops at the limit.
        await self.conn.execute("SET LOCAL enable_bitmapscan = off")
        rows: list[asyncpg.Record] = []
        # Newest first among those sent again: the events a lost log most likely held
        # unread are the last sent before it was lost; oldest first, they came after a
        # whole day of events the consumers already had (minutes after a busy day).
        # Versions decide which of two is kept, so the order changes no answer.
        for queue, order in (("sent_at IS NULL", "id"), ("resend", "id DESC")):
            rows += await self.conn.fetch(
                f"""
                SELECT id, tenant_id, topic, payload, traceparent, tracestate
                FROM outbox WHERE {queue} ORDER BY {order} LIMIT $1
                """,
                limit - len(rows),
            )
            if len(rows) == limit:
                break
        return rows

    async def mark_sent(self, ids: list[int]) -> None:
        await self.conn.execute(
            "UPDATE outbox SET sent_at = now(), resend = false WHERE id = ANY($1::bigint[])", ids
        )

    async def queue_again_since(self, hours: int) -> int:
        """Queues again the rows sent within the last ``hours``, behind every row not
        sent yet (newest first): consumers already have most of them, and each new event
        would wait for all of them. Returns how many."""
        status = await self.conn.execute(
            "UPDATE outbox SET resend = true WHERE sent_at IS NOT NULL AND NOT resend "
            "AND sent_at >= now() - make_interval(hours => $1)",
            hours,
        )
        return row_count(status)

    async def delete_sent_before(self, hours: int) -> int:
        """Deletes rows sent more than ``hours`` ago; returns how many."""
        status = await self.conn.execute(
            "DELETE FROM outbox WHERE sent_at IS NOT NULL "
            "AND sent_at < now() - make_interval(hours => $1)",
            hours,
        )
        return row_count(status)

    async def pending(self) -> int:
        """Rows of every tenant not yet acknowledged by the broker: the relay's backlog."""
        return int(await self.conn.fetchval("SELECT count(*) FROM outbox WHERE sent_at IS NULL"))

    async def pending_for(
        self,
        tenant_id: str,
        stores: Collection[str] | None = None,
        marketplaces: Collection[str] | None = None,
    ) -> int:
        """One tenant's rows not yet acknowledged by the broker; of its ``stores`` and
        ``marketplaces`` only, when given (a caller limited to them learns nothing of
        the others' pushes)."""
        source = "convert_from(payload, 'UTF8')::jsonb -> 'source'"
        count = await self.conn.fetchval(
            f"""
            SELECT count(*) FROM outbox
            WHERE tenant_id = $1 AND sent_at IS NULL
              AND ($2::text[] IS NULL OR {source} ->> 'store_id' = ANY($2::text[]))
              AND ($3::text[] IS NULL OR {source} ->> 'marketplace' = ANY($3::text[]))
            """,
            tenant_id,
            None if stores is None else sorted(stores),
            None if marketplaces is None else sorted(marketplaces),
        )
        return int(count)
