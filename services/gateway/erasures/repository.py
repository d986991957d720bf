from __future__ import annotations

from datetime import datetime

from sqlalchemy import func
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from services.gateway.erasures.models import Erasure
from services.gateway.tenants.data import GATEWAY_SCHEMA, GATEWAY_TABLES
from shared.tenant_data import erase_tenant


class ErasureRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, erasure: Erasure) -> Erasure:
        self.session.add(erasure)
        await self.session.flush()
        return erasure

    async def latest(self, tenant_id: str) -> Erasure | None:
        result = await self.session.execute(
            select(Erasure)
            .where(col(Erasure.tenant_id) == tenant_id)
            .order_by(col(Erasure.requested_at).desc(), col(Erasure.id).desc())
            .limit(1)
        )
        return result.scalar_one_or_none()

    async def erased_tenant_ids(self) -> set[str]:
        result = await self.session.execute(select(col(Erasure.tenant_id)).distinct())
        return set(result.scalars().all())

    async def get_for_update(self, erasure_id: str) -> Erasure | None:
        result = await self.session.execute(
            select(Erasure).where(col(Erasure.id) == erasure_id).with_for_update()
        )
        return result.scalar_one_or_none()

    async def lock_tenant(self, tenant_id: str) -> None:
        """Two erasures of one tenant at once queue up here."""
        await self.session.execute(
            select(func.pg_advisory_xact_lock(func.hashtext(f"erasure:{tenant_id}")))
        )

    async def unfinished(self, requested_before: datetime) -> list[Erasure]:
        result = await self.session.execute(
            select(Erasure)
            .where(col(Erasure.finished_at).is_(None), col(Erasure.requested_at) < requested_before)
            .order_by(col(Erasure.requested_at))
            .limit(100)
        )
        return list(result.scalars().all())

    async def erase_gateway_rows(self, tenant_id: str) -> dict[str, int]:
        """Every gateway row of the tenant but the erasures, in this transaction."""
        connection = await self.session.connection()
        raw = await connection.get_raw_connection()
        driver = raw.driver_connection
        assert driver is not None
        return await erase_tenant(driver, GATEWAY_SCHEMA, GATEWAY_TABLES, tenant_id)
