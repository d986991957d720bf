"""What the other services need to know of a tenant, asked with the caller's token."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel

from services.gateway.grants.service import effective_grant
from services.gateway.tenants.repository import TenantRepository
from shared.access import store_limits
from shared.auth import Principal, current_principal
from shared.deps import DbSession
from shared.errors import Forbidden, NotFound
from shared.scopes import KPI_READ

TENANT_PROFILE_PATH = "/internal/tenants/{tenant_id}/profile"
router = APIRouter(include_in_schema=False)


class TenantProfile(BaseModel):
    reporting_currency: str
    timezone: str | None


@router.get(TENANT_PROFILE_PATH, response_model=TenantProfile)
async def tenant_profile(
    request: Request,
    tenant_id: str,
    principal: Annotated[Principal, Depends(current_principal)],
    session: DbSession,
) -> TenantProfile:
    """The tenant's reporting currency and time zone, which KPI answers are given in:
    for its own tokens that may read KPIs, and an agency's holding a live grant of
    `kpi:read`; FORBIDDEN for anyone else, whether the tenant exists or not (CONTRACT
    §2)."""
    principal.require(KPI_READ)
    if principal.tenant_id != tenant_id:
        grant = await effective_grant(session, principal, tenant_id)
        if grant is None or KPI_READ not in grant.scopes:
            raise Forbidden(f"no access to tenant {tenant_id}")
        if (limited := store_limits(principal)) is not None and not grant.stores & limited:
            raise Forbidden(f"no access to any store of tenant {tenant_id}")
    tenant = await TenantRepository(session).get(tenant_id)
    if tenant is None:
        raise NotFound(f"no tenant {tenant_id}")
    return TenantProfile(reporting_currency=tenant.reporting_currency, timezone=tenant.timezone)
