from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request, Response

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
from shared.access import Access, WholeTenantAdmin, hold_unerased, require_access
from shared.db import Database
from shared.errors import FieldError, Forbidden, InvalidInput, PreconditionFailed
from shared.events import IDENTIFIER_LIMIT, is_identifier_length
from shared.negotiation import list_header
from shared.openapi import IF_NONE_MATCH, ErrorBody
from shared.paths import ANY_PATH
from shared.scopes import TENANT_ADMIN
from shared.service import match_holds, none_match_holds
from shared.text import trimmed
from shared.turns import KeyedTurns

# Stores rebucketed at once in a process: each holds a pooled connection (of 20) for
# seconds to minutes; the rest wait for a turn holding none.
REBUCKETINGS_AT_ONCE = 2


@dataclass
class ZoneChangeTurns:
    """One zone change of a tenant at a time, and ``REBUCKETINGS_AT_ONCE`` in all."""

    tenants: KeyedTurns = field(default_factory=lambda: KeyedTurns(1))
    process: asyncio.Semaphore = field(
        default_factory=lambda: asyncio.Semaphore(REBUCKETINGS_AT_ONCE)
    )


router = APIRouter(prefix="/v1/settings", tags=["settings"])
Admin = Annotated[Access, Depends(require_access(TENANT_ADMIN))]


def settings_tag(settings: KpiSettingsOut) -> str:
    """The settings' entity tag: it changes with every change (``updated_at`` does)."""
    digest = hashlib.sha256(settings.model_dump_json().encode()).hexdigest()
    return f'"{digest[:32]}"'


_TAGGED = {
    "ETag": {
        "description": "Send it back as If-Match to change what you read",
        "schema": {"type": "string"},
    }
}


@router.get(
    "/kpi",
    response_model=KpiSettingsOut,
    responses={
        200: {"headers": _TAGGED},
        304: {"description": "Unchanged since If-None-Match", "headers": _TAGGED},
    },
    openapi_extra={"parameters": [IF_NONE_MATCH]},
)
async def get_kpi_settings(request: Request, response: Response, access: Admin) -> Any:
    """The tenant's metric settings (defaults until changed), with their ETag."""
    db: Database = request.app.state.db
    async with db.raw_connection() as conn:
        settings = await SettingsRepository(conn).get(access.tenant_id)
    tag = settings_tag(settings)
    if none_match_holds(list_header(request.headers, "if-none-match"), tag):
        return Response(status_code=304, headers={"ETag": tag})
    response.headers["ETag"] = tag
    return settings


@router.put(
    "/kpi",
    response_model=KpiSettingsOut,
    responses={
        200: {"headers": _TAGGED},
        412: {
            "model": ErrorBody,
            "description": "If-Match names settings changed since, or If-None-Match "
            "names them as they are",
        },
    },
)
async def put_kpi_settings(
    request: Request,
    response: Response,
    access: WholeTenantAdmin,
    settings: KpiSettingsIn,
    if_match: Annotated[
        str | None,
        Header(
            alias="If-Match",
            description="The ETag of the settings read: refused (412) if they changed since",
        ),
    ] = None,
    if_none_match: Annotated[
        str | None,
        Header(
            alias="If-None-Match",
            description="Refused (412) if it names the settings as they are; `*` always "
            "is, as a tenant always has settings (its defaults until changed)",
        ),
    ] = None,
) -> KpiSettingsOut:
    """Replaces the settings (one left out takes its default); every answer after this
    uses them, history included. They apply to every store, so a user limited to some
    may read them, not change them. With `If-Match`, two admins editing at once do not
    undo each other's change: the second is told to read them again."""
    db: Database = request.app.state.db
    async with db.raw_connection() as conn, conn.transaction():
        await hold_unerased(request, conn, access.tenant_id)
        # Then: every answer from now on reads the new settings (the gateway runs
        # again a GraphQL request whose fields saw two versions), and the version's
        # row lock queues two admins' PUTs, even before the tenant has a settings row
        # to lock, so that the second's If-Match is checked against the first's change.
        await bump_versions(conn, {access.tenant_id})
        repository = SettingsRepository(conn)
        if if_match is not None or if_none_match is not None:
            current = settings_tag(await repository.get(access.tenant_id, for_update=True))
            _check_preconditions(request, current)
        stored = await repository.put(access.tenant_id, settings)
    response.headers["ETag"] = settings_tag(stored)
    return stored


def _check_preconditions(request: Request, current: str) -> None:
    """RFC 9110 §13.2.2's order: If-Match first, then If-None-Match, which a PUT
    fails with 412 (not 304) when it names what is stored."""
    if_match = list_header(request.headers, "if-match")
    if if_match.strip() and not match_holds(if_match, current):
        raise PreconditionFailed(
            "the settings changed since they were read",
            [FieldError("header.If-Match", "names settings changed since; GET them again")],
        )
    if none_match_holds(list_header(request.headers, "if-none-match"), current):
        raise PreconditionFailed(
            "the settings are as If-None-Match names them",
            [
                FieldError(
                    "header.If-None-Match",
                    "names the settings as they are (a tenant always has settings, "
                    "so * always does)",
                )
            ],
        )


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


@router.put(f"/stores/{{store_id:{ANY_PATH}}}", response_model=StoreZoneOut)
async def put_store_zone(
    request: Request, store_id: str, access: Admin, zone: StoreZone
) -> StoreZoneOut:
    """Sets the time zone the store's local dates follow instead of its marketplace's
    (CONTRACT §3). History moves with it: the store's facts are rebucketed in this
    request, and every answer after it uses the new dates."""
    # Read as events name stores (trimmed, as long as an event's): an override of " s1 "
    # would be kept apart from s1 and never apply, and one no event can name, never.
    store_id = trimmed(store_id)
    if not store_id or not is_identifier_length(store_id):
        raise InvalidInput(
            "invalid store id",
            [FieldError("store_id", f"1 character to {IDENTIFIER_LIMIT}, besides spaces")],
        )
    _check_zone_reach(access)
    if access.stores is not None and store_id not in access.stores:
        raise Forbidden(f"no access to store {store_id}")
    db: Database = request.app.state.db
    # The tenant's turn, then one of the process's, then a pooled connection: queued
    # behind their tenant's lock, thirty of one admin's changes held every connection
    # (other tenants' questions got 503), and two of them both turns (other tenants'
    # changes waited for the whole queue).
    turns: ZoneChangeTurns = request.app.state.zone_change_turns
    async with (
        turns.tenants.of(access.tenant_id) as tenant_turn,
        tenant_turn,
        turns.process,
        db.raw_connection() as conn,
        conn.transaction(),
    ):
        await hold_unerased(request, conn, access.tenant_id)
        moved = await set_store_zone(conn, access.tenant_id, store_id, zone.timezone)
        await bump_versions(conn, {access.tenant_id})
    return StoreZoneOut(store_id=store_id, timezone=zone.timezone, moved=moved)
