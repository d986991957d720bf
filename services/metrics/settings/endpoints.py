from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from services.metrics.settings.repository import SettingsRepository
from services.metrics.settings.schemas import KpiSettings, KpiSettingsOut
from shared.access import Access, require_access
from shared.db import Database
from shared.scopes import TENANT_ADMIN

router = APIRouter(prefix="/v1/settings", tags=["settings"])
Admin = Annotated[Access, Depends(require_access(TENANT_ADMIN))]


@router.get("/kpi", response_model=KpiSettingsOut)
async def get_kpi_settings(request: Request, access: Admin) -> KpiSettingsOut:
    """The tenant's metric settings (defaults until changed)."""
    db: Database = request.app.state.db
    async with db.raw_connection() as conn:
        return await SettingsRepository(conn).get(access.tenant_id)


@router.put("/kpi", response_model=KpiSettingsOut)
async def put_kpi_settings(
    request: Request, access: Admin, settings: KpiSettings
) -> KpiSettingsOut:
    """Replaces the settings; every answer after this uses them, history included."""
    db: Database = request.app.state.db
    async with db.raw_connection() as conn, conn.transaction():
        return await SettingsRepository(conn).put(access.tenant_id, settings)
