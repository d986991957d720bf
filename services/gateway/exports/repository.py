from __future__ import annotations

from datetime import datetime

from sqlalchemy import text, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from services.gateway.exports.models import Export


class ExportRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, export: Export) -> Export:
        self.session.add(export)
        await self.session.flush()
        return export

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

    async def finish(self, export_id: str, archive: bytes, sha256: str, now: datetime) -> None:
        await self.session.execute(
            text(
                "UPDATE exports SET status = 'ready', archive = :archive, archive_sha256 = :sha256, bytes = :size, finished_at = :now, heartbeat_at = :now WHERE id = :id AND status = 'running'"
            ),
            {
                "archive": archive,
                "sha256": sha256,
                "size": len(archive),
                "now": now,
                "id": export_id,
            },
        )

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
                error="the gateway process building it stopped; request a new export",
                finished_at=now,
            )
        )
        if tenant_id is not None:
            statement = statement.where(col(Export.tenant_id) == tenant_id)
        result = await self.session.execute(statement)
        return int(getattr(result, "rowcount", 0) or 0)

    async def archive_chunk(self, export_id: str, offset: int, size: int) -> bytes | None:
        """``size`` bytes of the archive from byte ``offset`` (0-based); None when gone."""
        result = await self.session.execute(
            text("SELECT substring(archive FROM :start FOR :size) FROM exports WHERE id = :id"),
            {"start": offset + 1, "size": size, "id": export_id},
        )
        chunk = result.scalar_one_or_none()
        return bytes(chunk) if chunk is not None else None
