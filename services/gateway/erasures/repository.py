from __future__ import annotations

from datetime import datetime

from sqlalchemy import func
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from services.gateway.erasures.models import Erasure
from services.gateway.tenants.data import GATEWAY_SCHEMA, GATEWAY_TABLES
from services.gateway.tenants.models import Tenant
from shared.errors import Forbidden
from shared.tenant_data import erase_tenant, erasure_turn

# An agency's archive holds the grants it received (the seller's id, store names and
# scopes), a seller's those it issued: erased with either side, an archive built before
# must not keep them. It is withdrawn; the partner asks for a new one.
WITHDRAWN = "it held grants of a tenant erased since; request a new export"
WITHDRAW_PARTNERS_ARCHIVES = f"""
    WITH partners AS (
        SELECT agency_tenant_id AS tenant_id, created_at FROM grants WHERE tenant_id = $1
        UNION ALL SELECT tenant_id, created_at FROM grants WHERE agency_tenant_id = $1
    ), withdrawn AS (
        -- Only the archives built once a grant between them existed hold one; one being
        -- built may have read it already, and ends withdrawn instead of ready.
        UPDATE exports e
        SET status = 'failed', bytes = NULL, archive_sha256 = NULL, error = '{WITHDRAWN}',
            finished_at = coalesce(e.finished_at, now())
        WHERE (e.status = 'ready' AND EXISTS (
            SELECT FROM partners p
            WHERE p.tenant_id = e.tenant_id AND p.created_at <= e.finished_at
        )) OR (e.status = 'running' AND EXISTS (
            SELECT FROM partners p WHERE p.tenant_id = e.tenant_id
        ))
        RETURNING e.id
    )
    DELETE FROM export_parts WHERE export_id IN (SELECT id FROM withdrawn)
"""


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
        """Erasures queue up here: the schema's erasure turn (``erasure_turn``, which
        ``erase_tenant`` takes again), taken before anything of a partner's is touched
        (its archives are withdrawn first), then the tenant's own."""
        turn = erasure_turn(GATEWAY_SCHEMA)
        await self.session.execute(
            select(func.pg_advisory_xact_lock(func.hashtextextended(turn, 0)))
        )
        await self.session.execute(
            select(func.pg_advisory_xact_lock(func.hashtext(f"erasure:{tenant_id}")))
        )

    async def share_tenant_lock(self, tenant_id: str) -> None:
        """A write that must not cross an erasure of its tenant: it waits for one under
        way, and one begun after waits for it."""
        await self.session.execute(
            select(func.pg_advisory_xact_lock_shared(func.hashtext(f"erasure:{tenant_id}")))
        )

    async def hold_unerased(self, tenant_id: str) -> None:
        """For a write adding a row of the tenant after a slow step (hashing a password
        or a secret): beside an erasure under way it is refused as any write of an
        erased tenant, not a foreign-key fault; or the erasure waits and erases it too."""
        if not await self.unerased(tenant_id):
            raise Forbidden(f"tenant {tenant_id} has been erased")

    async def unerased(self, tenant_id: str) -> bool:
        """Whether the tenant is there, once an erasure of it under way has ended; one
        begun after waits for this transaction, and so erases what it writes."""
        await self.share_tenant_lock(tenant_id)
        return await self.session.get(Tenant, tenant_id, populate_existing=True) is not None

    async def unfinished(self, requested_before: datetime) -> list[Erasure]:
        result = await self.session.execute(
            select(Erasure)
            .where(col(Erasure.finished_at).is_(None), col(Erasure.requested_at) < requested_before)
            .order_by(col(Erasure.requested_at))
            .limit(100)
        )
        return list(result.scalars().all())

    async def erase_gateway_rows(self, tenant_id: str) -> dict[str, int]:
        """Every gateway row of the tenant but the erasures, in this transaction; and
        the archives of the tenants it shared grants with, which hold those grants."""
        connection = await self.session.connection()
        raw = await connection.get_raw_connection()
        driver = raw.driver_connection
        assert driver is not None
        await driver.execute(WITHDRAW_PARTNERS_ARCHIVES, tenant_id)
        return await erase_tenant(driver, GATEWAY_SCHEMA, GATEWAY_TABLES, tenant_id)
