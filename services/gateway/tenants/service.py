"""Tenants and their clients: who may create what."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from services.gateway.erasures.repository import ErasureRepository
from services.gateway.oauth import sessions
from services.gateway.oauth.models import OAuthClient
from services.gateway.oauth.repository import ClientRepository
from services.gateway.oauth.secrets import hash_secret, new_client_id, new_client_secret
from services.gateway.tenants.models import Tenant
from services.gateway.tenants.repository import TenantRepository
from services.gateway.tenants.schemas import ClientCreate, ClientCreated, TenantCreate
from shared.access import WHOLE_TENANT_ONLY, limited_user
from shared.auth import Principal, revoked_client_key
from shared.errors import FieldError, Forbidden, InvalidInput, NotFound
from shared.scopes import PLATFORM_ADMIN, TENANT_ADMIN, TENANT_SCOPES
from shared.time import utcnow


async def create_tenant(session: AsyncSession, data: TenantCreate) -> Tenant:
    tenant = Tenant(
        id=f"tn_{secrets.token_hex(8)}",
        name=data.name,
        reporting_currency=data.reporting_currency,
        timezone=data.timezone,
    )
    return await TenantRepository(session).add(tenant)


def require_admin_of(principal: Principal, tenant_id: str) -> None:
    """The platform admin, or an admin of ``tenant_id``; else 403 (never 404)."""
    if PLATFORM_ADMIN not in principal.scopes:
        if principal.tenant_id != tenant_id:
            raise Forbidden(f"no access to tenant {tenant_id}")
        principal.require(TENANT_ADMIN)


async def readable_tenant(session: AsyncSession, principal: Principal, tenant_id: str) -> Tenant:
    """The tenant, when the caller is the platform admin or an admin of that tenant.

    Any other tenant's id is 403 (CONTRACT §2), whether it exists or not, so ids
    cannot be probed; only the platform admin learns that one does not exist.
    """
    require_admin_of(principal, tenant_id)
    tenant = await TenantRepository(session).get(tenant_id)
    if tenant is None:
        raise NotFound(f"no tenant {tenant_id}")
    return tenant


def _check_client_creator(principal: Principal, scopes: list[str], doing: str = "create") -> None:
    """A client is not limited and has no role: a user limited to some stores would
    reach them all through one, and an admin would act as an owner (change the owner's
    password, make owners) through one holding ``tenant:admin``. Who may make such a
    client may revoke it."""
    if limited_user(principal):
        raise Forbidden("a client reaches the whole tenant; this user's role is limited")
    roles = principal.claims.get("roles")
    if TENANT_ADMIN in scopes and roles is not None and "owner" not in roles:
        raise Forbidden(f"only an owner can {doing} a client with tenant:admin, which acts as one")


async def tenant_clients(
    session: AsyncSession, principal: Principal, tenant_id: str
) -> list[OAuthClient]:
    """The tenant's clients, revoked ones included, for its admins over the whole tenant."""
    await readable_tenant(session, principal, tenant_id)
    if limited_user(principal):
        raise Forbidden(WHOLE_TENANT_ONLY)
    return await ClientRepository(session).of_tenant(tenant_id)


async def revoke_client(
    session: AsyncSession, principal: Principal, tenant_id: str, client_id: str, ttl_seconds: int
) -> tuple[str, datetime] | None:
    """Revokes the client: it gets no more tokens, and those it was issued are refused
    as revoked until the last of them would have expired. Answers what to refuse from
    now on, and until when (None when it was revoked already); 404 for a client that is
    not the tenant's."""
    await readable_tenant(session, principal, tenant_id)
    client = await ClientRepository(session).of_tenant_for_update(tenant_id, client_id)
    if client is None:
        raise NotFound(f"no client {client_id}")
    _check_client_creator(principal, client.scopes, doing="revoke")
    if client.revoked_at is not None:
        return None
    now = utcnow()
    client.revoked_at = now
    session.add(client)
    key, until = revoked_client_key(client_id), now + timedelta(seconds=ttl_seconds)
    await sessions.revoke_access_token(session, key, tenant_id, until)
    return key, until


async def create_client(
    session: AsyncSession, principal: Principal, tenant_id: str, data: ClientCreate
) -> ClientCreated:
    tenant = await readable_tenant(session, principal, tenant_id)
    errors = [
        FieldError(
            field=f"scopes.{i}",
            reason=f"{scope} is not a tenant scope; allowed: {', '.join(TENANT_SCOPES)}",
        )
        for i, scope in enumerate(data.scopes)
        if scope not in TENANT_SCOPES
    ]
    if errors:
        raise InvalidInput(f"unknown or forbidden scope: {errors[0].reason.split()[0]}", errors)
    # A client never holds a scope its creator lacks (the platform admin holds them all).
    for scope in data.scopes:
        principal.require(scope)
    _check_client_creator(principal, data.scopes)
    secret = None if data.public else new_client_secret()
    secret_hash = hash_secret(secret) if secret else None
    await ErasureRepository(session).hold_unerased(tenant.id)
    client = OAuthClient(
        client_id=new_client_id(),
        tenant_id=tenant.id,
        name=data.name,
        secret_hash=secret_hash,
        scopes=sorted(set(data.scopes)),
        redirect_uris=data.redirect_uris,
        public=data.public,
        created_by=principal.client_id,
    )
    await ClientRepository(session).add(client)
    return ClientCreated(
        client_id=client.client_id,
        client_secret=secret,
        scopes=client.scopes,
        tenant_id=tenant.id,
        name=client.name,
        public=client.public,
        redirect_uris=client.redirect_uris,
    )
