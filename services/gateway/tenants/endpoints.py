from __future__ import annotations

from typing import Annotated

from annotated_types import Ge, Le
from fastapi import APIRouter, BackgroundTasks, Body, Depends, Query, Request, Response

from services.gateway.erasures import service as erasures
from services.gateway.erasures.schemas import ErasureConfirm, ErasureOut
from services.gateway.oauth.user_grants import NO_STORE
from services.gateway.tenants import service
from services.gateway.tenants.repository import TenantRepository
from services.gateway.tenants.schemas import (
    ClientCreate,
    ClientCreated,
    ClientList,
    ClientOut,
    TenantCreate,
    TenantList,
    TenantOut,
)
from shared.access import KnownParametersOnly, refuse_erased, refuse_unknown_parameters
from shared.auth import Principal, current_principal, require_scope
from shared.deps import DbSession
from shared.events import MAX_INT
from shared.openapi import LOCATED, ErrorBody, either_scope
from shared.query_lists import DIGITS_ONLY
from shared.scopes import PLATFORM_ADMIN, TENANT_ADMIN

router = APIRouter(prefix="/v1/tenants", tags=["tenants"])
TENANTS_PREFIX = "/v1/tenants/"


def is_tenant_path(path: str) -> bool:
    """``/v1/tenants/{id}`` itself, where the only write is the erasure."""
    rest = path[len(TENANTS_PREFIX) :] if path.startswith(TENANTS_PREFIX) else ""
    return bool(rest) and "/" not in rest.rstrip("/")


# The platform admin, or an admin of the tenant named in the path.
EITHER_ADMIN = either_scope(PLATFORM_ADMIN, TENANT_ADMIN)


async def admin_of_tenant(request: Request, tenant_id: str) -> Principal:
    """FastAPI dependency: the caller, the platform admin or an admin of the tenant
    the path names. A dependency (not a check in the route) so that it is answered
    before anything about the body (see shared.service)."""
    principal = await current_principal(request)
    service.require_admin_of(principal, tenant_id)
    if PLATFORM_ADMIN not in principal.scopes and request.method not in ("GET", "HEAD"):
        # The erased tenant's own tokens verify until they expire: no write of theirs.
        refuse_erased(request, tenant_id)
    refuse_unknown_parameters(request)
    # The tenant's own trail shows what the platform admin did to it.
    request.state.audit_tenant = tenant_id
    return principal


admin_of_tenant.checks_access = True  # type: ignore[attr-defined]
EitherAdmin = Annotated[Principal, Depends(admin_of_tenant)]


@router.post("", status_code=201, response_model=TenantOut, responses={201: LOCATED})
async def create_tenant(
    request: Request,
    response: Response,
    data: TenantCreate,
    principal: Annotated[Principal, Depends(require_scope(PLATFORM_ADMIN))],
    known: KnownParametersOnly,
    session: DbSession,
) -> TenantOut:
    """Creates a seller or agency tenant (platform admin only)."""
    tenant = await service.create_tenant(session, data)
    request.state.audit_tenant = tenant.id
    response.headers["Location"] = f"/v1/tenants/{tenant.id}"
    return TenantOut.model_validate(tenant)


@router.get("", response_model=TenantList)
async def list_tenants(
    principal: Annotated[Principal, Depends(require_scope(PLATFORM_ADMIN))],
    known: KnownParametersOnly,
    session: DbSession,
    limit: Annotated[int, Ge(1), Le(500), DIGITS_ONLY, Query()] = 100,
    # Bounded: PostgreSQL's OFFSET is a bigint, and a larger one failed as a 500.
    offset: Annotated[int, Ge(0), Le(MAX_INT), DIGITS_ONLY, Query()] = 0,
) -> TenantList:
    tenants = await TenantRepository(session).list_all(limit, offset)
    return TenantList(tenants=[TenantOut.model_validate(t) for t in tenants])


@router.get("/{tenant_id}", response_model=TenantOut, openapi_extra=EITHER_ADMIN)
async def get_tenant(
    tenant_id: str,
    principal: Annotated[Principal, Depends(current_principal)],
    known: KnownParametersOnly,
    session: DbSession,
) -> TenantOut:
    """A tenant, for the platform admin or that tenant's own admin."""
    return TenantOut.model_validate(await service.readable_tenant(session, principal, tenant_id))


@router.post(
    "/{tenant_id}/clients",
    status_code=201,
    response_model=ClientCreated,
    openapi_extra=EITHER_ADMIN,
)
async def create_client(
    tenant_id: str,
    data: ClientCreate,
    principal: EitherAdmin,
    session: DbSession,
    response: Response,
) -> ClientCreated:
    """An OAuth client of the tenant; its secret is in this answer only.

    Allowed for the platform admin (any tenant) and for a `tenant:admin` of that
    tenant. Scopes must be tenant scopes (else 422 naming `scopes.<i>`), and a client
    never gets a scope the caller's token lacks (403 `insufficient_scope` naming it).
    Another tenant is 403; an unknown one, for the platform admin, 404.
    """
    # The secret is shown once: no cache on the way, nor the browser's, keeps it.
    response.headers.update(NO_STORE)
    return await service.create_client(session, principal, tenant_id, data)


@router.get("/{tenant_id}/clients", response_model=ClientList, openapi_extra=EITHER_ADMIN)
async def list_clients(tenant_id: str, principal: EitherAdmin, session: DbSession) -> ClientList:
    """The tenant's OAuth clients, revoked ones included (with `revoked_at`); never a
    secret. For the platform admin and the tenant's admins over the whole tenant."""
    clients = await service.tenant_clients(session, principal, tenant_id)
    return ClientList(clients=[ClientOut.model_validate(c, from_attributes=True) for c in clients])


@router.delete(
    "/{tenant_id}/clients/{client_id}",
    status_code=204,
    openapi_extra=EITHER_ADMIN,
    responses={404: {"model": ErrorBody, "description": "No such client of this tenant"}},
)
async def revoke_client(
    tenant_id: str, client_id: str, request: Request, principal: EitherAdmin, session: DbSession
) -> Response:
    """Revokes a client: it gets no more tokens, and every token it was issued is refused
    from the next request on, in every service (within a second on a service's own port).
    Only an owner (or a client, or the platform admin) revokes one holding `tenant:admin`.
    Revoking a revoked client changes nothing."""
    ttl = request.app.state.settings.token_ttl_seconds
    refused = await service.revoke_client(session, principal, tenant_id, client_id, ttl)
    if refused is not None:
        # From the next request on (here even should the commit fail, until it expires).
        request.app.state.revoked_tokens.add(*refused)
    return Response(status_code=204)


@router.delete(
    "/{tenant_id}",
    status_code=202,
    response_model=ErasureOut,
    # Optional to FastAPI so that the token is checked before the body is: required to
    # a client, which gets 422 naming `confirm` without it.
    openapi_extra={**EITHER_ADMIN, "requestBody": {"required": True}},
    responses={202: LOCATED},
)
async def erase_tenant(
    tenant_id: str,
    request: Request,
    response: Response,
    principal: EitherAdmin,
    session: DbSession,
    background: BackgroundTasks,
    data: Annotated[ErasureConfirm | None, Body()] = None,
) -> ErasureOut:
    """Erases the tenant and all its data in every service; cannot be undone.

    For the platform admin or a `tenant:admin` of that tenant; the body must repeat the
    tenant id, `{"confirm": "<tenant_id>"}` (else 422 naming `confirm`). The gateway's
    part (users, clients, grants on both sides, tokens, audit, exports, the tenant) is
    done when this answers; the other services confirm over Kafka: poll
    `GET /v1/tenants/{tenant_id}/erasure` until `status` is `done`. The erasure record
    keeps the tenant id, as the proof; nothing else does. Access tokens already issued
    verify until they expire, but no client is left to renew them, and no service takes
    a write of them.
    """
    erasure = await erasures.request_erasure(
        session, principal, tenant_id, data.confirm if data else None
    )
    # From now on: should the commit fail, the next sweep reads the records again.
    request.app.state.erasures.erased.add(tenant_id)
    request.app.state.exports.cancel_tenant(tenant_id)
    # Published after the response, so after the commit: confirmations find the row.
    background.add_task(request.app.state.erasures.publish, erasure.id, tenant_id)
    response.headers["Location"] = f"/v1/tenants/{tenant_id}/erasure"
    return erasures.out(erasure)


@router.get("/{tenant_id}/erasure", response_model=ErasureOut, openapi_extra=EITHER_ADMIN)
async def get_erasure(
    tenant_id: str,
    principal: Annotated[Principal, Depends(current_principal)],
    known: KnownParametersOnly,
    session: DbSession,
) -> ErasureOut:
    """The tenant's latest erasure: which services have finished it."""
    return erasures.out(await erasures.latest_erasure(session, principal, tenant_id))
