from __future__ import annotations

from typing import Annotated

from annotated_types import Ge, Le
from fastapi import APIRouter, Depends, Query

from services.targets.plans.repository import PlanRepository
from services.targets.plans.schemas import PlanList, PlanOut
from shared.access import Access, require_access
from shared.deps import DbSession
from shared.query_lists import DIGITS_ONLY

router = APIRouter(prefix="/v1/targets", tags=["targets"])


@router.get("/plans", response_model=PlanList)
async def list_plans(
    access: Annotated[Access, Depends(require_access("targets:read"))],
    session: DbSession,
    year: Annotated[Annotated[int, Ge(2000), Le(2100), DIGITS_ONLY] | None, Query()] = None,
) -> PlanList:
    """The caller's tenant's target plans, optionally of one year. A plan sets the
    whole tenant's figures, so a caller limited to some stores, marketplaces or
    categories (an agency's grant, a user's role) reads none (403)."""
    access.require_whole_tenant()
    plans = await PlanRepository(session).list_for_tenant(access.tenant_id, year)
    return PlanList(plans=[PlanOut.model_validate(p) for p in plans])
