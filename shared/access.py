"""Whose data a request reaches, and how much of it.

A token acts for its own tenant. An agency's token reaches a seller's data only
through a grant that seller issued (CONTRACT §7), named by the ``tenant_id`` query
parameter. Grants live in the gateway; every other service asks it on every such
request, so a revocation or an expiry applies to the very next one, whatever tokens
the agency already holds.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Container, Iterable
from dataclasses import dataclass
from typing import Annotated, Any, Protocol

import asyncpg
import httpx
from fastapi import Depends, Query, Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from shared.auth import Principal, bearer_token, current_principal
from shared.db import Database, hold_tenants
from shared.errors import (
    FieldError,
    Forbidden,
    InsufficientScope,
    InvalidInput,
    RateLimited,
    Unauthenticated,
    UpstreamUnavailable,
)
from shared.scopes import GRANTABLE_SCOPES, LIMIT_DIMENSIONS, TENANT_ADMIN

# The gateway's answer to "which grant lets this caller into that tenant?".
EFFECTIVE_GRANT_PATH = "/internal/grants/effective"
TENANT_ID_DESCRIPTION = "The seller whose data an agency reads through a grant"
SINGULAR = {"stores": "store", "marketplaces": "marketplace", "categories": "category"}


WHOLE_TENANT_ONLY = (
    "this needs access to the whole tenant; this caller is limited to some stores, "
    "marketplaces or categories"
)


def limited_user(principal: Principal) -> bool:
    """A user whose role limits it to some stores, marketplaces or categories."""
    return principal.claims.get("limits") is not None


def store_limits(principal: Principal) -> frozenset[str] | None:
    """The stores a user's role limits it to; None when it is not limited to stores."""
    return _limits(principal.claims.get("limits")).get("stores")


@dataclass(frozen=True)
class EffectiveGrant:
    id: str
    stores: frozenset[str]
    scopes: frozenset[str]


@dataclass(frozen=True)
class Access:
    """The tenant a request acts for, with the scopes and the slice it may use there.

    ``stores``, ``marketplaces`` and ``categories`` are None when not limited: a grant
    limits stores, a user's role may limit all three.
    """

    tenant_id: str
    scopes: frozenset[str]
    stores: frozenset[str] | None = None
    grant_id: str | None = None
    marketplaces: frozenset[str] | None = None
    categories: frozenset[str] | None = None
    # Scopes the caller's token holds and its grant does not give here.
    withheld: frozenset[str] = frozenset()

    @property
    def through_grant(self) -> bool:
        return self.grant_id is not None

    def require(self, scope: str) -> None:
        if scope in self.withheld:
            # Not insufficient_scope (RFC 6750 §3.1): a token asked again with the
            # scope would be refused again; the seller's grant is what lacks it.
            remedy = (
                "its seller may add it"
                if scope in GRANTABLE_SCOPES
                else "no grant gives it: it acts in the caller's own tenant only"
            )
            raise Forbidden(f"the grant of tenant {self.tenant_id} does not give {scope}; {remedy}")
        if scope not in self.scopes:
            raise InsufficientScope(scope)

    @property
    def limited(self) -> bool:
        return any(getattr(self, d) is not None for d in LIMIT_DIMENSIONS)

    def require_whole_tenant(self) -> None:
        """403 for a caller limited to some stores, marketplaces or categories: what
        reaches the whole tenant (its settings, its audit, its grants, its export) is
        not theirs to read or change."""
        if self.limited:
            raise Forbidden(WHOLE_TENANT_ONLY)

    def narrow(self, dimension: str, requested: Iterable[str] | None) -> list[str] | None:
        """The values of ``dimension`` (stores, marketplaces, categories) a query may
        cover: what it asked for, within the limit. Asking for a value outside the
        limit is FORBIDDEN, never an empty answer.
        """
        wanted = list(requested or [])
        limit: frozenset[str] | None = getattr(self, dimension)
        if limit is None:
            return wanted or None
        if not limit:
            # No filter would read as no limit: an empty reach is refused, not widened.
            raise Forbidden(f"no access to any {SINGULAR[dimension]} of tenant {self.tenant_id}")
        outside = sorted(set(wanted) - limit)
        if outside:
            # Quoted: the empty group ("", lines without a category) is a value too.
            named = json.dumps(outside[0], ensure_ascii=False)
            raise Forbidden(
                f"no access to {SINGULAR[dimension]} {named} of tenant {self.tenant_id}"
            )
        return wanted or sorted(limit)


class GrantLookup(Protocol):
    async def effective(
        self, request: Request, principal: Principal, tenant_id: str
    ) -> EffectiveGrant | None: ...


class GatewayGrantLookup:
    """Asks the gateway, with the caller's own token, for its grant into a tenant."""

    def __init__(self, gateway_url: str, client: httpx.AsyncClient) -> None:
        self.url = gateway_url.rstrip("/") + EFFECTIVE_GRANT_PATH
        self.client = client

    async def effective(
        self, request: Request, principal: Principal, tenant_id: str
    ) -> EffectiveGrant | None:
        try:
            response = await self.client.get(
                self.url,
                params={"tenant_id": tenant_id},
                headers={"Authorization": f"Bearer {bearer_token(request)}"},
            )
        except httpx.HTTPError:
            raise UpstreamUnavailable.for_now("grants cannot be checked right now") from None
        if response.status_code == 404:
            return None
        if response.status_code == 401:
            # Revoked at the gateway before this service's copy of the list caught up:
            # the token is no good, which is the caller's to know, not a fault here.
            raise Unauthenticated("the access token has been revoked")
        if response.status_code == 429:
            # The caller's own rate at the gateway, not a fault of ours.
            retry_after = response.headers.get("retry-after", "1")
            raise RateLimited(int(retry_after) if retry_after.isdigit() else 1)
        if response.status_code != 200:
            raise UpstreamUnavailable.for_now(
                f"grants cannot be checked right now ({response.status_code})"
            )
        body: dict[str, Any] = response.json()
        return EffectiveGrant(
            id=str(body["id"]),
            stores=frozenset(body["stores"]),
            scopes=frozenset(body["scopes"]),
        )


def _limits(claim: Any) -> dict[str, frozenset[str]]:
    """A user's role limits from the token; a malformed claim limits to nothing."""
    if claim is None:
        return {}
    if not isinstance(claim, dict):
        return {d: frozenset() for d in LIMIT_DIMENSIONS}
    limits: dict[str, frozenset[str]] = {}
    for dimension in LIMIT_DIMENSIONS:
        values = claim.get(dimension)
        if values is None:
            continue
        limits[dimension] = (
            frozenset(str(v) for v in values) if isinstance(values, list) else frozenset()
        )
    return limits


def refuse_erased(request: Request, *tenant_ids: str | None) -> None:
    """403 when any of these tenants is one the app knows to be erased (``app.state.
    erased``): a write of, or for, it would bring its rows back."""
    erased: Container[str] = getattr(request.app.state, "erased", ())
    for tenant_id in tenant_ids:
        if tenant_id is not None and tenant_id in erased:
            raise Forbidden(f"tenant {tenant_id} has been erased")


async def hold_unerased(request: Request, conn: asyncpg.Connection, tenant_id: str) -> None:
    """In a write's transaction: the write and its tenant's erasure never overlap, one
    waits for the other, and a write after the erasure is refused (403) as any write
    of an erased tenant, so that no row of the tenant outlives its erasure."""
    db: Database = request.app.state.db
    await hold_tenants(conn, db.schema, [tenant_id])
    refuse_erased(request, tenant_id)


# Far longer than any tenant id (``tn_`` and 16 hex digits).
MAX_TENANT_ID = 64


async def resolve_access(
    request: Request, principal: Principal, scope: str, tenant_id: str | None
) -> Access:
    """The caller's access for ``scope``: its own tenant, or another through a grant."""
    principal.require(scope)
    own = principal.require_tenant()
    if tenant_id == "":
        # A blank id is a form or a variable left empty, not a tenant to refuse.
        raise InvalidInput(
            "tenant_id is empty",
            [FieldError("tenant_id", "must not be empty; leave it out for the caller's own")],
        )
    limits = _limits(principal.claims.get("limits"))
    # An erased tenant's tokens verify until they expire: no write may bring its rows
    # back. Reading finds nothing, which is true (GraphQL reads are POSTs too).
    writing = request.method not in ("GET", "HEAD") and not scope.endswith(":read")
    if writing:
        refuse_erased(request, own)
    if tenant_id is None or tenant_id == own:
        return Access(
            tenant_id=own,
            scopes=principal.scopes,
            stores=limits.get("stores"),
            marketplaces=limits.get("marketplaces"),
            categories=limits.get("categories"),
        )
    if "\x00" in tenant_id:
        # No tenant id holds one (nor can a lookup carry it): nobody may read it.
        raise Forbidden("no access to a tenant id holding the NUL character")
    if len(tenant_id) > MAX_TENANT_ID:
        # Nor is one this long: refused unlooked-up, and not echoed whole.
        raise Forbidden(f"no access to tenant {tenant_id[:MAX_TENANT_ID]}…")
    lookup: GrantLookup = request.app.state.grant_lookup
    grant = await lookup.effective(request, principal, tenant_id)
    if grant is None:
        # In the caller's own trail, naming whom it asked for.
        request.state.audit_detail = {"asked_tenant": tenant_id}
        raise Forbidden(f"no access to tenant {tenant_id}")
    if writing:
        # Only now: to a caller without a grant an erased tenant is one it may not
        # reach, as one that never was; telling them apart would say it existed.
        refuse_erased(request, tenant_id)
    # An agency's reach is what both its token and the grant allow: a person of the
    # agency limited to some marketplaces, categories or stores stays so in the seller's.
    own_stores = limits.get("stores")
    access = Access(
        tenant_id=tenant_id,
        scopes=principal.scopes & grant.scopes,
        stores=grant.stores if own_stores is None else grant.stores & own_stores,
        grant_id=grant.id,
        withheld=principal.scopes - grant.scopes,
        marketplaces=limits.get("marketplaces"),
        categories=limits.get("categories"),
    )
    try:
        access.require(scope)
    except Forbidden:
        # Refused under a grant: in the seller's trail too, as what is done under it is.
        request.state.audit_tenant = tenant_id
        request.state.audit_detail = {"grant_id": grant.id, "acting_tenant": principal.tenant_id}
        raise
    if access.stores is not None and not access.stores:
        # A person limited to stores the grant does not give: nothing of the seller is
        # theirs, not even its settings.
        raise Forbidden(f"no access to any store of tenant {tenant_id}")
    return access


def _query_parameters(dependant: Dependant) -> set[str]:
    """Every query parameter a route declares, its dependencies' (``tenant_id``) too."""
    names = {param.alias for param in dependant.query_params}
    for dependency in dependant.dependencies:
        names |= _query_parameters(dependency)
    return names


def _declared_parameters(route: APIRoute) -> frozenset[str]:
    """``_query_parameters`` of the route, worked out at its first request and kept on
    it: routes are made once at start-up and never change (nor hash: not a cache key)."""
    declared: frozenset[str] | None = getattr(route, "_lodestar_query_parameters", None)
    if declared is None:
        declared = frozenset(_query_parameters(route.dependant))
        route._lodestar_query_parameters = declared  # type: ignore[attr-defined]
    return declared


def refuse_unknown_parameters(request: Request) -> None:
    """A misspelt parameter is refused, not ignored: ``marketplace=US`` would answer
    every marketplace's total, and ``tenantid=`` would push into the caller's own tenant."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    unknown = sorted(set(request.query_params) - _declared_parameters(route))
    if unknown:
        errors = [FieldError(field=name, reason="unknown parameter") for name in unknown]
        raise InvalidInput(f"{unknown[0]}: unknown parameter", errors)


# For routes that check their caller another way: listed after that check among the
# route's parameters, as FastAPI resolves them in order, so that a missing token or
# scope is still answered first.
KnownParametersOnly = Annotated[None, Depends(refuse_unknown_parameters)]


def require_access(scope: str) -> Callable[..., Awaitable[Access]]:
    """FastAPI dependency factory: the tenant a request acts for, holding ``scope``.

    Adds the ``tenant_id`` query parameter to every route that uses it, and refuses
    parameters the route does not declare (once the caller is known to be allowed).
    """

    async def dependency(
        request: Request,
        tenant_id: Annotated[str | None, Query(description=TENANT_ID_DESCRIPTION)] = None,
    ) -> Access:
        principal = await current_principal(request)
        access = await resolve_access(request, principal, scope, tenant_id)
        refuse_unknown_parameters(request)
        # The audit trail records whose data the request reached.
        request.state.access = access
        return access

    dependency.__name__ = f"access_{scope.replace(':', '_')}"
    dependency.required_scope = scope  # type: ignore[attr-defined]  # read by the OpenAPI
    return dependency


async def whole_tenant_admin(
    access: Annotated[Access, Depends(require_access(TENANT_ADMIN))],
) -> Access:
    """``tenant:admin`` of the whole tenant: a user limited to some stores, marketplaces
    or categories cannot take (or erase, or change for everyone) everything of it."""
    access.require_whole_tenant()
    return access


# What takes a route the whole tenant's admin may use (grants, settings, audit, export).
WholeTenantAdmin = Annotated[Access, Depends(whole_tenant_admin)]
