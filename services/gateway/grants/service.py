"""Agency grants (CONTRACT §7): a seller issues, changes and revokes; an agency holds."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

from fastapi import Request
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.gateway.erasures.repository import ErasureRepository
from services.gateway.grants.models import Grant
from services.gateway.grants.repository import GrantRepository
from services.gateway.grants.schemas import GrantCreate, GrantOut, GrantUpdate
from services.gateway.tenants.models import Tenant
from shared.access import Access, EffectiveGrant, limited_user, store_limits
from shared.auth import Principal
from shared.db import Database
from shared.errors import Conflict, FieldError, Forbidden, InvalidInput, NotFound
from shared.scopes import GRANTABLE_SCOPES, TENANT_ADMIN
from shared.time import utcnow


def out(grant: Grant, now: datetime | None = None) -> GrantOut:
    return GrantOut(
        id=grant.id,
        tenant_id=grant.tenant_id,
        agency_tenant_id=grant.agency_tenant_id,
        stores=grant.stores,
        scopes=grant.scopes,
        expires_at=grant.expires_at,
        status=grant.status_at(now or utcnow()),
        created_at=grant.created_at,
        updated_at=grant.updated_at,
        revoked_at=grant.revoked_at,
    )


def out_for(principal: Principal, grant: Grant) -> GrantOut:
    """A grant as the caller may see it: a person of the agency limited to some stores
    sees, of a grant the agency received, only those (the seller's other store names
    are none of its business), as it reaches only those."""
    shown = out(grant)
    limited = store_limits(principal)
    if limited is not None and grant.agency_tenant_id == principal.tenant_id:
        shown.stores = [store for store in grant.stores if store in limited]
    return shown


def _checked_scopes(scopes: list[str], issuer: Access) -> list[str]:
    """The scopes a grant may give: grantable ones the issuer holds itself, as a client
    never holds a scope its creator lacks."""
    errors = [
        FieldError(
            field=f"scopes.{i}",
            reason=f"{scope} cannot be granted; grantable: {', '.join(GRANTABLE_SCOPES)}",
        )
        for i, scope in enumerate(scopes)
        if scope not in GRANTABLE_SCOPES
    ]
    if errors:
        raise InvalidInput(errors[0].reason, errors)
    for scope in scopes:
        issuer.require(scope)
    return sorted(set(scopes))


def _checked_expiry(expires_at: datetime | None) -> datetime | None:
    """The expiry in UTC, as the database gives it back: the answer to a POST or PATCH
    says it as every later GET does, so clients comparing the text see no change."""
    if expires_at is None:
        return None
    if expires_at <= utcnow():
        raise InvalidInput(
            "expires_at is in the past",
            [FieldError(field="expires_at", reason="must be in the future")],
        )
    return expires_at.astimezone(UTC)


async def _lock_pair(session: AsyncSession, tenant_id: str, agency_tenant_id: str) -> None:
    # One active grant per seller and agency: two concurrent issues queue up here.
    await session.execute(
        select(func.pg_advisory_xact_lock(func.hashtext(f"grant:{tenant_id}:{agency_tenant_id}")))
    )


async def create_grant(
    session: AsyncSession, principal: Principal, issuer: Access, data: GrantCreate
) -> Grant:
    """A grant from the tenant ``issuer`` acts for (``tenant:admin`` held there, over the
    whole tenant)."""
    seller = issuer.tenant_id
    if data.agency_tenant_id == seller:
        raise InvalidInput(
            "a tenant cannot grant access to itself",
            [FieldError(field="agency_tenant_id", reason="must be another tenant")],
        )
    scopes = _checked_scopes(data.scopes, issuer)
    expires_at = _checked_expiry(data.expires_at)
    # Beside an erasure of either side under way, the grant waits for it: its row would
    # outlive the erasure, or break it on the tenant's foreign key.
    erasures = ErasureRepository(session)
    await erasures.hold_unerased(seller)
    await erasures.share_tenant_lock(data.agency_tenant_id)
    if await session.get(Tenant, data.agency_tenant_id, populate_existing=True) is None:
        raise InvalidInput(
            f"no tenant {data.agency_tenant_id}",
            [FieldError(field="agency_tenant_id", reason="no such tenant")],
        )
    repository = GrantRepository(session)
    await _lock_pair(session, seller, data.agency_tenant_id)
    existing = await repository.effective(data.agency_tenant_id, seller, utcnow())
    if existing:
        raise Conflict(
            f"grant {existing[0].id} already gives this agency access; change it with PATCH"
        )
    now = utcnow()
    return await repository.add(
        Grant(
            id=f"gr_{secrets.token_hex(8)}",
            tenant_id=seller,
            agency_tenant_id=data.agency_tenant_id,
            stores=sorted(set(data.stores)),
            scopes=scopes,
            expires_at=expires_at,
            created_by=principal.subject,
            created_at=now,
            updated_at=now,
        )
    )


def _issues_grants(principal: Principal) -> bool:
    """The seller's side of its grants is its admins' over the whole tenant."""
    return TENANT_ADMIN in principal.scopes and not limited_user(principal)


async def visible_grants(
    session: AsyncSession, principal: Principal, tenant_id: str | None = None
) -> list[Grant]:
    """Grants the caller's tenant received; with tenant:admin, also those it issued.
    Naming another tenant: only the grants received from it, 403 when there are none
    (its grants are its own business, not an empty list)."""
    tenant = principal.require_tenant()
    grants = await GrantRepository(session).involving(
        tenant, given=_issues_grants(principal), received=True
    )
    if tenant_id is None or tenant_id == tenant:
        return grants
    received = [g for g in grants if g.tenant_id == tenant_id and g.agency_tenant_id == tenant]
    if not received:
        raise Forbidden(f"no access to tenant {tenant_id}")
    return received


async def visible_grant(session: AsyncSession, principal: Principal, grant_id: str) -> Grant:
    """A grant either party may read; anyone else gets 404, so ids cannot be probed."""
    tenant = principal.require_tenant()
    grant = await GrantRepository(session).get(grant_id)
    if grant is not None:
        if grant.agency_tenant_id == tenant:
            return grant
        if grant.tenant_id == tenant and _issues_grants(principal):
            return grant
    raise NotFound(f"no grant {grant_id}")


async def _issued_grant(session: AsyncSession, issuer: Access, grant_id: str) -> Grant:
    """A grant the issuer's tenant issued: only the seller changes or revokes it (its
    whole-tenant admin, as the routes' ``WholeTenantAdmin`` has checked). The agency,
    which reads it, is told so; anyone else gets 404, as reading it does."""
    grant = await GrantRepository(session).get(grant_id)
    if grant is not None and grant.agency_tenant_id == issuer.tenant_id:
        raise Forbidden(f"grant {grant_id} is changed and revoked by the seller that issued it")
    if grant is None or grant.tenant_id != issuer.tenant_id:
        raise NotFound(f"no grant {grant_id}")
    return grant


async def update_grant(
    session: AsyncSession, issuer: Access, grant_id: str, data: GrantUpdate
) -> Grant:
    grant = await _issued_grant(session, issuer, grant_id)
    if grant.revoked_at is not None:
        raise Conflict(f"grant {grant_id} is revoked; issue a new one")
    stores_before, expiry_before = set(grant.stores), grant.expires_at
    if data.stores is not None:
        grant.stores = sorted(set(data.stores))
    if data.scopes is not None:
        grant.scopes = _checked_scopes(data.scopes, issuer)
    if "expires_at" in data.model_fields_set:
        expires_at = _checked_expiry(data.expires_at)
        if grant.expires_at is not None and grant.expires_at <= utcnow():
            # Reviving an expired grant must not make a second active one for the pair.
            await _lock_pair(session, grant.tenant_id, grant.agency_tenant_id)
            effective = await GrantRepository(session).effective(
                grant.agency_tenant_id, grant.tenant_id, utcnow()
            )
            # The grant itself, revived a moment ago by the same change sent twice, is none.
            others = [other for other in effective if other.id != grant.id]
            if others:
                raise Conflict(
                    f"grant {others[0].id} already gives this agency access; change that one"
                )
        grant.expires_at = expires_at
    widened = not set(grant.stores) <= stores_before or (
        expiry_before is not None and (grant.expires_at is None or grant.expires_at > expiry_before)
    )
    if widened:
        # More stores or a longer life hand out the grant's scopes anew, as issuing it
        # would: only by a caller that holds them.
        for scope in grant.scopes:
            issuer.require(scope)
    grant.updated_at = utcnow()
    session.add(grant)
    await session.flush()
    return grant


async def revoke_grant(session: AsyncSession, issuer: Access, grant_id: str) -> None:
    """Ends the grant now; revoking a revoked grant changes nothing."""
    grant = await _issued_grant(session, issuer, grant_id)
    if grant.revoked_at is None:
        grant.revoked_at = grant.updated_at = utcnow()
        session.add(grant)
        await session.flush()


async def effective_grant(
    session: AsyncSession, principal: Principal, tenant_id: str
) -> EffectiveGrant | None:
    """The grant that lets the caller's tenant into ``tenant_id`` now, if any."""
    agency = principal.tenant_id
    if not agency:
        return None
    grants = await GrantRepository(session).effective(agency, tenant_id, utcnow())
    if not grants:
        return None
    grant = grants[0]
    return EffectiveGrant(
        id=grant.id, stores=frozenset(grant.stores), scopes=frozenset(grant.scopes)
    )


class DatabaseGrantLookup:
    """The gateway's own lookup: its table, no HTTP call to itself."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def effective(
        self, request: Request, principal: Principal, tenant_id: str
    ) -> EffectiveGrant | None:
        async with self.db.session() as session:
            return await effective_grant(session, principal, tenant_id)
