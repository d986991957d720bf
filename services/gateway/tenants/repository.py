from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from services.gateway.tenants.models import Tenant


class TenantRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, tenant: Tenant) -> Tenant:
        self.session.add(tenant)
        await self.session.flush()
        await self.session.refresh(tenant)
        return tenant

    async def get(self, tenant_id: str) -> Tenant | None:
        return await self.session.get(Tenant, tenant_id)

    async def list_all(self, limit: int, offset: int) -> list[Tenant]:
        result = await self.session.execute(
            select(Tenant)
            .order_by(col(Tenant.created_at), col(Tenant.id))
            .limit(limit)
            .offset(offset)
        )
        return list(result.scalars().all())
