"""A tenant's users: who its admins may add, change and disable."""

from __future__ import annotations

import secrets
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.gateway.erasures.repository import ErasureRepository
from services.gateway.users.models import User
from services.gateway.users.passwords import hash_password
from services.gateway.users.repository import UserRepository
from services.gateway.users.schemas import UserCreate, UserOut, UserUpdate
from shared.access import Access
from shared.auth import Principal
from shared.errors import Conflict, FieldError, Forbidden, NotFound
from shared.scopes import LIMIT_DIMENSIONS, ROLES
from shared.time import utcnow


def out(user: User) -> UserOut:
    return UserOut(
        id=user.id,
        tenant_id=user.tenant_id,
        email=user.email,
        name=user.name,
        role=user.role,
        scopes=sorted(ROLES[user.role]),
        limits=user.limits,
        disabled=user.disabled_at is not None,
        created_at=user.created_at,
        updated_at=user.updated_at,
    )


def check_owner_rights(principal: Principal, *roles: str | None) -> None:
    """Only an owner (or a client, which has no role) makes or changes owners."""
    caller_roles = principal.claims.get("roles")
    if "owner" in roles and caller_roles is not None and "owner" not in caller_roles:
        raise Forbidden("only an owner can make or change an owner")


def within(limits: dict[str, Any] | None, access: Access) -> bool:
    """Whether a user limited by ``limits`` sees no more than the caller does: an admin
    limited to some stores must not make, or become, a user who sees the others."""
    for dimension in LIMIT_DIMENSIONS:
        reach: frozenset[str] | None = getattr(access, dimension)
        if reach is None:
            continue
        values = (limits or {}).get(dimension)
        if values is None or not set(values) <= reach:
            return False
    return True


def _check_limits_within(limits: dict[str, Any] | None, access: Access) -> None:
    if not within(limits, access):
        raise Forbidden(
            "limits: a user must not reach stores, marketplaces or categories this "
            "user's role does not",
            [FieldError("limits", "wider than this caller's own limits")],
        )


def _check_role_within(principal: Principal, role: str) -> None:
    """A caller gives no user a role with a scope its own token lacks, nor sets the
    password of one: the user would sign in with it, as a client made with that scope
    would act with it (403 naming the scope, as for clients)."""
    for scope in ROLES[role]:
        principal.require(scope)


def _narrows(limits: dict[str, Any] | None, before: dict[str, Any] | None) -> bool:
    """Whether ``limits`` let a user see no more than ``before`` did."""
    if before is None:
        return True
    return limits is not None and all(
        dimension in limits and set(limits[dimension]) <= set(values)
        for dimension, values in before.items()
    )


async def create_user(
    session: AsyncSession, principal: Principal, access: Access, data: UserCreate
) -> User:
    check_owner_rights(principal, data.role)
    _check_role_within(principal, data.role)
    _check_limits_within(data.limits.as_claim() if data.limits else None, access)
    repository = UserRepository(session)
    await repository.hold_email(access.tenant_id, data.email)
    if await repository.by_email(access.tenant_id, data.email) is not None:
        raise Conflict(f"this tenant has a user with e-mail {data.email} already")
    now = utcnow()
    password_hash = await hash_password(data.password)
    # The tenant may have been erased during the hashing (half a second).
    await ErasureRepository(session).hold_unerased(access.tenant_id)
    return await repository.add(
        User(
            id=f"us_{secrets.token_hex(8)}",
            tenant_id=access.tenant_id,
            email=data.email,
            name=data.name,
            password_hash=password_hash,
            role=data.role,
            limits=data.limits.as_claim() if data.limits else None,
            created_at=now,
            updated_at=now,
        )
    )


async def tenant_user(
    session: AsyncSession, access: Access, user_id: str, *, for_change: bool = False
) -> User:
    """A user of the caller's tenant who sees no more than the caller (see ``within``);
    ``for_change``, locked until the transaction ends, so that two changes (a deletion
    among them) go one after the other and the later finds the user as the earlier left it."""
    repository = UserRepository(session)
    user = await (repository.lock(user_id) if for_change else repository.get(user_id))
    if user is None or user.tenant_id != access.tenant_id or not within(user.limits, access):
        raise NotFound(f"no user {user_id}")
    return user


async def update_user(
    session: AsyncSession, principal: Principal, access: Access, user_id: str, data: UserUpdate
) -> tuple[User, bool]:
    """The user changed, and whether what its tokens say changed (password, role,
    limits, disabled): only then do its sessions end."""
    fields = data.model_fields_set
    user = await tenant_user(session, access, user_id, for_change=True)
    check_owner_rights(principal, user.role, data.role)
    if data.role is not None:
        _check_role_within(principal, data.role)
    if data.password is not None:
        # The role the user holds now too: demoted in the same request, it would keep
        # the caller's password when an owner gave the role back.
        _check_role_within(principal, user.role)
    before = (user.password_hash, user.role, user.limits, user.disabled_at is not None)
    if data.name is not None:
        user.name = data.name
    if data.password is not None:
        user.password_hash = await hash_password(data.password)
    if data.role is not None:
        user.role = data.role
    if "limits" in fields:
        limits = data.limits.as_claim() if data.limits else None
        _check_limits_within(limits, access)
        if not _narrows(limits, user.limits):
            # Wider limits hand the user's role out over more, as making the user would.
            _check_role_within(principal, user.role)
        user.limits = limits
    if data.disabled is not None and data.disabled != (user.disabled_at is not None):
        if not data.disabled:
            # Enabled again, the user signs in with its role: only a caller holding it.
            _check_role_within(principal, user.role)
        user.disabled_at = utcnow() if data.disabled else None
    user.updated_at = utcnow()
    session.add(user)
    await session.flush()
    after = (user.password_hash, user.role, user.limits, user.disabled_at is not None)
    return user, after != before
