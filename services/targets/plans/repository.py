from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import select

from services.targets.plans.models import TargetPlan


class PlanRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def list_for_tenant(self, tenant_id: str, year: int | None) -> list[TargetPlan]:
        query = select(TargetPlan).where(TargetPlan.tenant_id == tenant_id)
        if year is not None:
            query = query.where(TargetPlan.year == year)
        query = query.order_by(TargetPlan.year, TargetPlan.name)  # type: ignore[arg-type]
        result = await self.session.execute(query)
        return list(result.scalars().all())
