from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from services.metrics.facts.zones import overrides, set_store_zone
from services.metrics.kpis.cache import bump_versions
from services.metrics.settings.repository import SettingsRepository
from services.metrics.settings.schemas import (
    KpiSettingsIn,
    KpiSettingsOut,
    StoreZone,
    StoreZoneList,
    StoreZoneListed,
    StoreZoneOut,
)
from shared.access import Access, WholeTenantAdmin, require_access
from shared.db import Database
from shared.errors import FieldError, Forbidden, InvalidInput
from shared.events import MAX_TEXT
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
    request: Request, access: WholeTenantAdmin, settings: KpiSettingsIn
) -> KpiSettingsOut:
    """Replaces the settings (one left out takes its default); every answer after this
    uses them, history included. They apply to every store, so a user limited to some
    may read them, not change them."""
    db: Database = request.app.state.db
    async with db.raw_connection() as conn, conn.transaction():
        return await SettingsRepository(conn).put(access.tenant_id, settings)


def _check_zone_reach(access: Access) -> None:
    """A store's zone moves every fact of the store: a caller limited to some
    marketplaces or categories may not know or move the stores' others."""
    if access.marketplaces is not None or access.categories is not None:
        raise Forbidden(
            "a store's time zone moves all of its data; this user's role is limited to "
            "some marketplaces or categories"
        )


@router.get("/stores", response_model=StoreZoneList)
async def list_store_zones(request: Request, access: Admin) -> StoreZoneList:
    """Stores whose local dates follow a time zone of their own."""
    _check_zone_reach(access)
    db: Database = request.app.state.db
    async with db.raw_connection() as conn:
        rows = await overrides(conn, access.tenant_id)
    return StoreZoneList(
        stores=[
            StoreZoneListed(store_id=r["store_id"], timezone=r["timezone"])
            for r in rows
            if access.stores is None or r["store_id"] in access.stores
        ]
    )


@router.put("/stores/{store_id:path}", response_model=StoreZoneOut)
async def put_store_zone(
    request: Request, store_id: str, access: Admin, zone: StoreZone
) -> StoreZoneOut:
    """Sets the time zone the store's local dates follow instead of its marketplace's
    (CONTRACT §3). History moves with it: the store's facts are rebucketed in this
    request, and every answer after it uses the new dates."""
    # Read as events name stores (trimmed, at most MAX_TEXT characters): an override of
    # " s1 " would be kept apart from s1 and never apply.
    store_id = store_id.strip()
    if not store_id or len(store_id) > MAX_TEXT:
        raise InvalidInput(
            "invalid store id",
            [FieldError("store_id", f"1 to {MAX_TEXT} characters besides surrounding spaces")],
        )
    _check_zone_reach(access)
    if access.stores is not None and store_id not in access.stores:
        raise Forbidden(f"no access to store {store_id}")
    db: Database = request.app.state.db
    async with db.raw_connection() as conn, conn.transaction():
        moved = await set_store_zone(conn, access.tenant_id, store_id, zone.timezone)
        await bump_versions(conn, {access.tenant_id})
    return StoreZoneOut(store_id=store_id, timezone=zone.timezone, moved=moved)
