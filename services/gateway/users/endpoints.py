"""``/v1/users``: a tenant's people, their roles and limits (scope ``tenant:admin``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from services.gateway.oauth.revoked import refuse_at_once
from services.gateway.oauth.sessions import end_user_sessions
from services.gateway.users import service
from services.gateway.users.schemas import UserCreate, UserList, UserOut, UserUpdate
from shared.access import Access, require_access
from shared.auth import Principal, current_principal
from shared.deps import DbSession
from shared.openapi import LOCATED, ErrorBody
from shared.scopes import TENANT_ADMIN

router = APIRouter(prefix="/v1/users", tags=["users"])
Admin = Annotated[Access, Depends(require_access(TENANT_ADMIN))]
Caller = Annotated[Principal, Depends(current_principal)]


@router.post(
    "",
    status_code=201,
    response_model=UserOut,
    responses={
        201: LOCATED,
        409: {"model": ErrorBody, "description": "A user of this tenant has that e-mail"},
    },
)
async def create_user(
    data: UserCreate, access: Admin, principal: Caller, session: DbSession, response: Response
) -> UserOut:
    """Adds a user with a role (owner, admin, manager, analyst, viewer), optionally
    limited to stores, marketplaces and categories. E-mail addresses are unique."""
    user = await service.create_user(session, principal, access, data)
    response.headers["Location"] = f"/v1/users/{user.id}"
    return service.out(user)


@router.get("", response_model=UserList)
async def list_users(access: Admin, session: DbSession) -> UserList:
    users = await service.UserRepository(session).of_tenant(access.tenant_id)
    return UserList(users=[service.out(u) for u in users if service.within(u.limits, access)])


@router.get("/{user_id}", response_model=UserOut)
async def get_user(user_id: str, access: Admin, session: DbSession) -> UserOut:
    return service.out(await service.tenant_user(session, access, user_id))


@router.patch("/{user_id}", response_model=UserOut)
async def update_user(
    user_id: str,
    data: UserUpdate,
    access: Admin,
    principal: Caller,
    session: DbSession,
    request: Request,
) -> UserOut:
    """Changes name, password, role, limits or ``disabled`` (left out, a field stays;
    only ``limits`` may be null, which lifts them). A change of password, role or
    limits, and disabling, end the user's sessions: the next sign-in gets the new ones.
    Setting a field to what it is already changes nothing and ends nothing."""
    user, access_changed = await service.update_user(session, principal, access, user_id, data)
    if access_changed:
        refuse_at_once(request, await end_user_sessions(session, user.id))
    return service.out(user)


@router.delete("/{user_id}", status_code=204)
async def delete_user(
    user_id: str, access: Admin, principal: Caller, session: DbSession, request: Request
) -> Response:
    # Locked before its sign-ins go: a refresh under way then ends before them, not
    # after, and a deletion sent twice at once is 404 the second time.
    user = await service.tenant_user(session, access, user_id, for_change=True)
    service.check_owner_rights(principal, user.role)
    refuse_at_once(request, await end_user_sessions(session, user.id, delete_rows=True))
    await session.delete(user)
    await session.flush()
    return Response(status_code=204)
