from __future__ import annotations

import hashlib
from datetime import datetime
from typing import IO

from sqlalchemy import text, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from services.gateway.exports.models import Export
from services.gateway.exports.sources import NEW_EXPORT


class ExportRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, export: Export) -> Export:
        self.session.add(export)
        await self.session.flush()
        return export

    async def hold_tenant(self, tenant_id: str) -> None:
        """Until the transaction ends: two requests of one tenant start one export."""
        await self.session.execute(
            text("SELECT pg_advisory_xact_lock(hashtext('gateway.exports:' || :tenant))"),
            {"tenant": tenant_id},
        )

    async def running(self, tenant_id: str) -> Export | None:
        result = await self.session.execute(
            select(Export).where(
                col(Export.tenant_id) == tenant_id, col(Export.status) == "running"
            )
        )
        return result.scalars().first()

    async def discard_all_but_newest(
        self, tenant_id: str, kept: int, listed: int, reason: str
    ) -> None:
        """Deletes the archives of the tenant's exports older than its ``kept`` newest,
        which then give ``reason`` for it; past its ``listed`` newest, the exports
        themselves."""
        await self.session.execute(
            text(
                "WITH older AS ("
                "SELECT id FROM exports WHERE tenant_id = :tenant "
                "ORDER BY created_at DESC, id OFFSET :kept"
                "), discarded AS ("
                "UPDATE exports SET status = 'failed', bytes = NULL, archive_sha256 = NULL, "
                "error = :reason WHERE id IN (SELECT id FROM older) AND status = 'ready' "
                "RETURNING id"
                ") DELETE FROM export_parts WHERE export_id IN (SELECT id FROM discarded)"
            ),
            {"tenant": tenant_id, "kept": kept, "reason": reason},
        )
        await self.session.execute(
            text(
                "DELETE FROM exports WHERE tenant_id = :tenant AND id IN ("
                "SELECT id FROM exports WHERE tenant_id = :tenant "
                "ORDER BY created_at DESC, id OFFSET :listed)"
            ),
            {"tenant": tenant_id, "listed": listed},
        )

    async def get(self, tenant_id: str, export_id: str) -> Export | None:
        result = await self.session.execute(
            select(Export).where(col(Export.tenant_id) == tenant_id, col(Export.id) == export_id)
        )
        return result.scalar_one_or_none()

    async def list_for(self, tenant_id: str, limit: int) -> list[Export]:
        result = await self.session.execute(
            select(Export)
            .where(col(Export.tenant_id) == tenant_id)
            .order_by(col(Export.created_at).desc(), col(Export.id))
            .limit(limit)
        )
        return list(result.scalars().all())

    async def progress(self, export_id: str, done: int, total: int, now: datetime) -> None:
        await self.session.execute(
            update(Export)
            .where(col(Export.id) == export_id, col(Export.status) == "running")
            .values(tables_done=done, tables_total=total, heartbeat_at=now)
        )

    async def heartbeat(self, export_id: str, now: datetime) -> None:
        await self.session.execute(
            update(Export)
            .where(col(Export.id) == export_id, col(Export.status) == "running")
            .values(heartbeat_at=now)
        )

    async def finish(
        self, export_id: str, tenant_id: str, archive: IO[bytes], part_bytes: int, now: datetime
    ) -> bool:
        """Stores the archive, read from ``archive`` a part at a time, and marks the export
        ready with its size and SHA-256; False when it is no longer running (nothing is
        kept then)."""
        digest = hashlib.sha256()
        size = part = 0
        while chunk := archive.read(part_bytes):
            await self.session.execute(
                text(
                    "INSERT INTO export_parts (export_id, tenant_id, part, data) "
                    "VALUES (:id, :tenant, :part, :data)"
                ),
                {"id": export_id, "tenant": tenant_id, "part": part, "data": chunk},
            )
            digest.update(chunk)
            size += len(chunk)
            part += 1
        result = await self.session.execute(
            update(Export)
            .where(col(Export.id) == export_id, col(Export.status) == "running")
            .values(
                status="ready",
                archive_sha256=digest.hexdigest(),
                size_bytes=size,
                finished_at=now,
                heartbeat_at=now,
            )
        )
        if not getattr(result, "rowcount", 0):
            await self.session.execute(
                text("DELETE FROM export_parts WHERE export_id = :id"), {"id": export_id}
            )
            return False
        return True

    async def fail(self, export_id: str, error: str, now: datetime) -> None:
        await self.session.execute(
            update(Export)
            .where(col(Export.id) == export_id, col(Export.status) == "running")
            .values(status="failed", error=error, finished_at=now)
        )

    async def fail_stale(
        self, before: datetime, now: datetime, tenant_id: str | None = None
    ) -> int:
        """Marks failed the running exports whose heartbeat stopped before ``before``."""
        statement = (
            update(Export)
            .where(col(Export.status) == "running", col(Export.heartbeat_at) < before)
            .values(
                status="failed",
                error=f"the gateway process building it stopped{NEW_EXPORT}",
                finished_at=now,
            )
        )
        if tenant_id is not None:
            statement = statement.where(col(Export.tenant_id) == tenant_id)
        result = await self.session.execute(statement)
        return int(getattr(result, "rowcount", 0) or 0)

    async def archive_part(self, export_id: str, part: int) -> bytes | None:
        """Part ``part`` (0-based) of the stored archive; None past its end."""
        result = await self.session.execute(
            text("SELECT data FROM export_parts WHERE export_id = :id AND part = :part"),
            {"id": export_id, "part": part},
        )
        data = result.scalar_one_or_none()
        return bytes(data) if data is not None else None
