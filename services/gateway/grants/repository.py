from __future__ import annotations

from datetime import datetime

from sqlalchemy import or_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from services.gateway.grants.models import Grant


class GrantRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, grant: Grant) -> Grant:
        self.session.add(grant)
        await self.session.flush()
        return grant

    async def get(self, grant_id: str) -> Grant | None:
        return await self.session.get(Grant, grant_id)

    async def involving(self, tenant_id: str, given: bool, received: bool) -> list[Grant]:
        """Grants the tenant issued (``given``) and/or holds (``received``), newest first."""
        sides = []
        if given:
            sides.append(col(Grant.tenant_id) == tenant_id)
        if received:
            sides.append(col(Grant.agency_tenant_id) == tenant_id)
        if not sides:
            return []
        result = await self.session.execute(
            select(Grant).where(or_(*sides)).order_by(col(Grant.created_at).desc(), col(Grant.id))
        )
        return list(result.scalars().all())

    async def effective(self, agency_tenant_id: str, tenant_id: str, now: datetime) -> list[Grant]:
        """The agency's grants into the tenant that are neither revoked nor expired."""
        result = await self.session.execute(
            select(Grant).where(
                col(Grant.agency_tenant_id) == agency_tenant_id,
                col(Grant.tenant_id) == tenant_id,
                col(Grant.revoked_at).is_(None),
                or_(col(Grant.expires_at).is_(None), col(Grant.expires_at) > now),
            )
        )
        return list(result.scalars().all())
