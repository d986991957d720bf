"""``/v1/connections``: a store's read-only platform credentials (``connections:manage``).

Refused with 422 naming ``granted_scopes.<i>`` when the credential may write to the
marketplace; credentials are sealed at rest and never answered back.
"""

from __future__ import annotations

import secrets
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response

from services.ingest.connections.crypto import CredentialBox
from services.ingest.connections.permissions import write_access
from services.ingest.connections.repository import ConnectionRepository
from services.ingest.connections.schemas import (
    ConnectionCreate,
    ConnectionList,
    ConnectionOut,
    ConnectionUpdate,
)
from shared.access import Access, hold_unerased, require_access
from shared.db import Database
from shared.errors import Conflict, FieldError, Forbidden, InvalidInput, NotFound
from shared.openapi import ErrorBody

router = APIRouter(prefix="/v1/connections", tags=["connections"])
Manager = Annotated[Access, Depends(require_access("connections:manage"))]


def _read_only(platform: str, scopes: list[str]) -> list[str]:
    errors = [
        FieldError(field=f"granted_scopes.{i}", reason=reason)
        for i, scope in enumerate(scopes)
        if (reason := write_access(platform, scope)) is not None
    ]
    if errors:
        raise InvalidInput(f"write access refused: {errors[0].reason}", errors)
    return sorted(set(scopes))


def _box(request: Request) -> CredentialBox:
    box: CredentialBox = request.app.state.credential_box
    return box


def _out(row: Any) -> ConnectionOut:
    return ConnectionOut.model_validate(dict(row))


@router.post(
    "",
    status_code=201,
    response_model=ConnectionOut,
    responses={409: {"model": ErrorBody, "description": "That platform's store is connected"}},
)
async def create_connection(
    request: Request, data: ConnectionCreate, access: Manager
) -> ConnectionOut:
    """Connects a store of a platform with credentials that can only read."""
    _check_reach(access)
    if access.stores is not None and data.store_id not in access.stores:
        raise Forbidden(f"no access to store {data.store_id}")
    if access.marketplaces is not None and data.marketplace not in access.marketplaces:
        raise Forbidden(f"no access to marketplace {data.marketplace}")
    scopes = _read_only(data.platform, data.granted_scopes)
    sealed = _box(request).seal(data.credentials)
    db: Database = request.app.state.db
    async with db.raw_connection() as conn, conn.transaction():
        await hold_unerased(request, conn, access.tenant_id)
        row = await ConnectionRepository(conn).add(
            {
                "id": f"cn_{secrets.token_hex(8)}",
                "tenant_id": access.tenant_id,
                "platform": data.platform,
                "store_id": data.store_id,
                "marketplace": data.marketplace,
                "name": data.name,
                "granted_scopes": scopes,
                "credentials": sealed,
                "created_by": request.state.principal.subject,
            }
        )
    if row is None:
        raise Conflict(f"{data.platform} store {data.store_id} is already connected")
    return _out(row)


@router.get("", response_model=ConnectionList)
async def list_connections(request: Request, access: Manager) -> ConnectionList:
    _check_reach(access)
    db: Database = request.app.state.db
    async with db.raw_connection() as conn:
        rows = await ConnectionRepository(conn).of_tenant(access.tenant_id)
    return ConnectionList(connections=[_out(r) for r in rows if _within(access, r)])


def _check_reach(access: Access) -> None:
    if access.categories is not None:
        raise Forbidden(
            "a connection reads every category of its store; this user's role is limited"
        )


def _within(access: Access, row: Any) -> bool:
    """A connection of a store and marketplace the caller may reach."""
    return (access.stores is None or row["store_id"] in access.stores) and (
        access.marketplaces is None or row["marketplace"] in access.marketplaces
    )


async def _visible(conn: Any, access: Access, connection_id: str) -> Any:
    _check_reach(access)
    row = await ConnectionRepository(conn).get(access.tenant_id, connection_id)
    if row is None or not _within(access, row):
        raise NotFound(f"no connection {connection_id}")
    return row


@router.patch("/{connection_id}", response_model=ConnectionOut)
async def update_connection(
    request: Request, connection_id: str, data: ConnectionUpdate, access: Manager
) -> ConnectionOut:
    """Pauses or resumes syncing, or re-authorises with new credentials and scopes
    (checked read-only like a new connection)."""
    db: Database = request.app.state.db
    async with db.raw_connection() as conn, conn.transaction():
        row = await _visible(conn, access, connection_id)
        changes: dict[str, Any] = {}
        if data.status is not None:
            changes["status"] = data.status
        if data.granted_scopes is not None:
            changes["granted_scopes"] = _read_only(row["platform"], data.granted_scopes)
        if data.credentials is not None:
            changes["credentials"] = _box(request).seal(data.credentials)
        if not changes:
            return _out(row)
        updated = await ConnectionRepository(conn).update(access.tenant_id, connection_id, changes)
    return _out(updated)


@router.delete("/{connection_id}", status_code=204)
async def delete_connection(request: Request, connection_id: str, access: Manager) -> Response:
    """Forgets the connection and its credentials."""
    db: Database = request.app.state.db
    async with db.raw_connection() as conn:
        await _visible(conn, access, connection_id)
        await ConnectionRepository(conn).delete(access.tenant_id, connection_id)
    return Response(status_code=204)
