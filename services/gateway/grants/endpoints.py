"""``/v1/grants`` (CONTRACT §7) and the effective-grant check the other services call."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response

from services.gateway.grants import service
from services.gateway.grants.schemas import (
    EffectiveGrantOut,
    GrantCreate,
    GrantList,
    GrantOut,
    GrantUpdate,
)
from shared.access import (
    EFFECTIVE_GRANT_PATH,
    KnownParametersOnly,
    WholeTenantAdmin,
    store_limits,
)
from shared.auth import Principal, current_principal
from shared.deps import DbSession
from shared.errors import NotFound
from shared.openapi import LOCATED, ErrorBody

# The seller issues, changes and revokes (``WholeTenantAdmin``): a tenant_id naming
# another tenant is 403, as on every route (tenant:admin is never granted, so no agency
# acts for a seller here), and a grant hands whole stores to another tenant, so no
# caller limited to some stores issues one.
router = APIRouter(prefix="/v1/grants", tags=["grants"])
internal_router = APIRouter(include_in_schema=False)
Caller = Annotated[Principal, Depends(current_principal)]


@router.post(
    "",
    status_code=201,
    response_model=GrantOut,
    responses={
        201: LOCATED,
        409: {"model": ErrorBody, "description": "The agency has an active grant already"},
    },
)
async def create_grant(
    data: GrantCreate,
    issuer: WholeTenantAdmin,
    principal: Caller,
    session: DbSession,
    response: Response,
) -> GrantOut:
    """Lets an agency tenant reach some of this seller's stores, with some scopes.

    One active grant per agency: a second is 409; change the first with PATCH.
    """
    grant = await service.create_grant(session, principal, issuer, data)
    response.headers["Location"] = f"/v1/grants/{grant.id}"
    return service.out(grant)


@router.get("", response_model=GrantList)
async def list_grants(
    principal: Caller,
    known: KnownParametersOnly,
    session: DbSession,
    tenant_id: Annotated[
        str | None,
        Query(description="Another tenant: only the grants the caller received from it"),
    ] = None,
) -> GrantList:
    """Grants this tenant received and, for a ``tenant:admin``, those it issued."""
    grants = await service.visible_grants(session, principal, tenant_id)
    return GrantList(grants=[service.out_for(principal, g) for g in grants])


@router.get("/{grant_id}", response_model=GrantOut)
async def get_grant(
    grant_id: str, principal: Caller, known: KnownParametersOnly, session: DbSession
) -> GrantOut:
    return service.out_for(principal, await service.visible_grant(session, principal, grant_id))


@router.patch(
    "/{grant_id}",
    response_model=GrantOut,
    responses={
        409: {
            "model": ErrorBody,
            "description": "The grant is revoked, or the change would make a second one active",
        }
    },
)
async def update_grant(
    grant_id: str, data: GrantUpdate, issuer: WholeTenantAdmin, session: DbSession
) -> GrantOut:
    """Changes the stores, scopes or expiry; the agency's next request sees the change."""
    return service.out(await service.update_grant(session, issuer, grant_id, data))


@router.delete("/{grant_id}", status_code=204)
async def revoke_grant(grant_id: str, issuer: WholeTenantAdmin, session: DbSession) -> Response:
    """Revokes the grant: the agency's very next request in any service is refused."""
    await service.revoke_grant(session, issuer, grant_id)
    return Response(status_code=204)


@internal_router.get(EFFECTIVE_GRANT_PATH, response_model=EffectiveGrantOut)
async def effective_grant(
    principal: Caller, session: DbSession, tenant_id: Annotated[str, Query()]
) -> EffectiveGrantOut:
    """For the other services: the caller's grant into ``tenant_id`` now, else 404. Of
    its stores, only those the caller reaches: a person of the agency limited to some
    stores reads the answer too (the public gateway serves it), and the seller's other
    store names are none of its business, as ``GET /v1/grants`` shows them."""
    grant = await service.effective_grant(session, principal, tenant_id)
    if grant is None:
        raise NotFound(f"no grant into tenant {tenant_id}")
    limited = store_limits(principal)
    stores = grant.stores if limited is None else grant.stores & limited
    return EffectiveGrantOut(id=grant.id, stores=sorted(stores), scopes=sorted(grant.scopes))
