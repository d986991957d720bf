"""Tenant erasure (issue 5, ownership): everywhere, confirmed service by service.

The gateway records the erasure and erases its own rows in one transaction (grants on
both sides, users, clients, codes, refresh tokens, audit, exports, the tenant), then
asks the other services over Kafka; each confirms, and the erasure is done when all
have. The erasure row keeps the tenant's id as the proof; nothing else does.
"""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.gateway.erasures.models import Erasure
from services.gateway.erasures.repository import ErasureRepository
from services.gateway.erasures.schemas import ErasureOut
from services.gateway.proxy.routes import DOWNSTREAM
from services.gateway.tenants.repository import TenantRepository
from shared.access import WHOLE_TENANT_ONLY, limited_user
from shared.auth import Principal
from shared.erasure import ErasureDone
from shared.errors import FieldError, Forbidden, InvalidInput, NotFound
from shared.scopes import PLATFORM_ADMIN, TENANT_ADMIN
from shared.time import utcnow

SERVICES: tuple[str, ...] = ("gateway", *DOWNSTREAM)


def out(erasure: Erasure) -> ErasureOut:
    statuses = {s: str(v.get("status", "pending")) for s, v in erasure.services.items()}
    return ErasureOut(
        id=erasure.id,
        tenant_id=erasure.tenant_id,
        status="done" if erasure.finished_at is not None else "running",
        services=statuses,
        rows_deleted={
            s: int(v["rows_deleted"]) for s, v in erasure.services.items() if "rows_deleted" in v
        },
        requested_at=erasure.requested_at,
        finished_at=erasure.finished_at,
    )


def _authorize(principal: Principal, tenant_id: str) -> None:
    """The platform admin, or a tenant:admin of that tenant whose role is not limited to
    some stores, marketplaces or categories; another tenant gets 403."""
    if PLATFORM_ADMIN in principal.scopes:
        return
    if principal.tenant_id != tenant_id:
        raise Forbidden(f"no access to tenant {tenant_id}")
    principal.require(TENANT_ADMIN)
    if limited_user(principal):
        raise Forbidden(WHOLE_TENANT_ONLY)


def _authorize_erasing(principal: Principal, tenant_id: str) -> None:
    """As ``_authorize``, and of the tenant's users only an owner: an admin may not touch
    an owner in any other way, and erasing ends every owner's account with the rest (a
    client, which has no role, acts as an owner)."""
    _authorize(principal, tenant_id)
    roles = principal.claims.get("roles")
    if PLATFORM_ADMIN not in principal.scopes and roles is not None and "owner" not in roles:
        raise Forbidden("only an owner can erase the tenant")


def _done(rows_deleted: int) -> dict[str, Any]:
    return {"status": "done", "rows_deleted": rows_deleted, "finished_at": utcnow().isoformat()}


async def request_erasure(
    session: AsyncSession, principal: Principal, tenant_id: str, confirm: str | None
) -> Erasure:
    """Records the erasure and erases the gateway's rows of the tenant; the caller
    publishes the request to the other services once this commits.

    A tenant that never existed is 404. The platform admin may ask again for one
    already erased (say, after the broker was down): the gateway's rows are erased
    again and the first record is answered, to be published again, so its counts and
    time stay the proof. The erased tenant's own tokens may not: 403, as every write of
    theirs.
    """
    _authorize_erasing(principal, tenant_id)
    repository = ErasureRepository(session)
    await repository.lock_tenant(tenant_id)
    exists = await TenantRepository(session).get(tenant_id) is not None
    previous = await repository.latest(tenant_id)
    if not exists and previous is None:
        raise NotFound(f"no tenant {tenant_id}")
    if previous is not None and PLATFORM_ADMIN not in principal.scopes:
        raise Forbidden(f"tenant {tenant_id} has been erased")
    if confirm != tenant_id:
        reason = "required" if confirm is None else "must be the id of the tenant to erase"
        raise InvalidInput(
            f"confirm the erasure with the tenant id: confirm {reason}",
            [FieldError(field="confirm", reason=reason)],
        )
    if previous is not None:
        await repository.erase_gateway_rows(tenant_id)
        return previous
    erasure = await repository.add(
        Erasure(
            id=f"er_{secrets.token_hex(8)}",
            tenant_id=tenant_id,
            requested_by=principal.subject,
            requested_at=utcnow(),
            services={service: {"status": "pending"} for service in SERVICES},
        )
    )
    deleted = await repository.erase_gateway_rows(tenant_id)
    erasure.services = {**erasure.services, "gateway": _done(sum(deleted.values()))}
    session.add(erasure)
    await session.flush()
    return erasure


async def latest_erasure(session: AsyncSession, principal: Principal, tenant_id: str) -> Erasure:
    _authorize(principal, tenant_id)
    erasure = await ErasureRepository(session).latest(tenant_id)
    if erasure is None:
        raise NotFound(f"no erasure of tenant {tenant_id}")
    return erasure


async def record_confirmation(session: AsyncSession, done: ErasureDone) -> Erasure | None:
    """Marks ``done.service`` done; the erasure is done when every service is. A repeated
    confirmation changes nothing; one for an unknown erasure or service is ignored."""
    repository = ErasureRepository(session)
    erasure = await repository.get_for_update(done.erasure_id)
    if erasure is None or done.service not in erasure.services:
        return None
    if erasure.services[done.service].get("status") == "done":
        return erasure
    services = {**erasure.services, done.service: _done(done.rows_deleted)}
    erasure.services = services
    if all(entry.get("status") == "done" for entry in services.values()):
        erasure.finished_at = utcnow()
    session.add(erasure)
    await session.flush()
    return erasure


async def erased_tenant_ids(session: AsyncSession) -> set[str]:
    """Every tenant an erasure was ever asked for, finished or not."""
    return await ErasureRepository(session).erased_tenant_ids()


async def unfinished(session: AsyncSession, older_than_seconds: float) -> list[Erasure]:
    """Erasures some service has not confirmed, asked at least that long ago."""
    return await ErasureRepository(session).unfinished(
        utcnow() - timedelta(seconds=older_than_seconds)
    )
