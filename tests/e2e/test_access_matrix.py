"""The access matrix: every REST route of the OpenAPI document and every GraphQL field,
called by every kind of caller, each with the exact status it must get.

Callers: the seller's admin client; a token of the seller missing each scope in turn;
a signed-in user of each role; another seller; an agency holding a grant to one store;
an agency whose grant was revoked; the platform admin; nobody. A route or field without
an entry here fails the test, so access rules are decided when a route is written.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from shared.scopes import PLATFORM_ADMIN, ROLES, TENANT_ADMIN, TENANT_SCOPES
from tests.conftest import NewTenant, Stack, TenantClient, fetch_token
from tests.gateway.login import add_user, frontend_client, user_tokens
from tests.metrics.test_kpis import line

GRANTED_SCOPES = ("kpi:read", "targets:read")


@dataclass
class Caller:
    name: str
    headers: dict[str, str]
    # The tenant whose token this is; None for the platform admin and nobody.
    tenant: str | None
    scopes: frozenset[str]
    # "seller": acts for the seller itself; "stranger": another tenant naming the seller;
    # "agency": holds a live grant; "platform"; "anonymous".
    kind: str
    # Marks this caller must never see: stores outside its grant or its role's limits.
    hidden: tuple[str, ...] = ()


@dataclass
class World:
    http: httpx.AsyncClient
    admin_headers: dict[str, str]
    seller: TenantClient
    other: TenantClient
    agency: TenantClient
    store: str
    other_store: str
    grant_id: str
    user_id: str
    connection_id: str
    callers: list[Caller] = field(default_factory=list)

    async def fresh_tenant_id(self) -> str:
        response = await self.http.post(
            "/v1/tenants", json={"name": f"t-{secrets.token_hex(3)}"}, headers=self.admin_headers
        )
        assert response.status_code == 201
        tenant_id: str = response.json()["id"]
        return tenant_id

    async def fresh_grant_id(self) -> str:
        response = await self.http.post(
            "/v1/grants",
            json={
                "agency_tenant_id": await self.fresh_tenant_id(),
                "stores": [self.store],
                "scopes": ["kpi:read"],
            },
            headers=self.seller.headers,
        )
        assert response.status_code == 201
        grant_id: str = response.json()["id"]
        return grant_id

    async def fresh_user_id(self) -> str:
        return str((await add_user(self.http, self.seller, "viewer"))["id"])


def sale(store: str) -> dict[str, Any]:
    event_id = secrets.token_hex(6)
    return line(event_id, f"o-{event_id}", 1, "3.00", "2026-03-10T18:00:00Z", store=store)


@dataclass
class Call:
    path: str
    params: dict[str, str] = field(default_factory=dict)
    json: Any = None
    content: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)


Build = Callable[[World, Caller, bool], Awaitable[Call]]


@dataclass(frozen=True)
class Route:
    """``scope`` the route needs; ``ok`` its success status; ``tenant_data`` when the
    route reaches a tenant's data through ``tenant_id`` (agencies and strangers name the
    seller); ``rule`` overrides the expected status for callers that rule covers."""

    scope: str | None
    ok: int
    build: Build
    tenant_data: bool = True
    rule: Callable[[Caller, World], int | None] | None = None


def seller_tenant_param(world: World, caller: Caller) -> dict[str, str]:
    # Sellers act for themselves; anyone else names the seller.
    return {} if caller.kind == "seller" else {"tenant_id": world.seller.tenant_id}


def plain(path: str, **params: str) -> Build:
    async def build(world: World, caller: Caller, allowed: bool) -> Call:
        return Call(path, {**params, **seller_tenant_param(world, caller)})

    return build


# By store, so an answer names the stores it covers and a leak would show.
KPI_PARAMS = {
    "metrics": "gmv",
    "from": "2026-03-01",
    "to": "2026-03-31",
    "grain": "total",
    "group_by": "store",
}


async def push_call(world: World, caller: Caller, allowed: bool) -> Call:
    return Call(
        "/v1/events",
        seller_tenant_param(world, caller),
        json={"events": [sale(world.store)]},
    )


async def csv_call(world: World, caller: Caller, allowed: bool) -> Call:
    event_id = secrets.token_hex(6)
    body = (
        "event_id,platform,store_id,marketplace,order_id,line_id,sku,quantity,unit_price,"
        "currency,status,purchased_at\n"
        f"{event_id},amazon,{world.store},US,o-{event_id},{event_id},LAMP-01,1,2.00,USD,"
        "shipped,2026-03-11T10:00:00Z\n"
    )
    return Call(
        "/v1/events:csv",
        {"type": "order_line", **seller_tenant_param(world, caller)},
        content=body.encode(),
        headers={"Content-Type": "text/csv"},
    )


async def settings_put(world: World, caller: Caller, allowed: bool) -> Call:
    return Call(
        "/v1/settings/kpi", seller_tenant_param(world, caller), json={"gmv_includes_tax": False}
    )


async def store_zone_put(world: World, caller: Caller, allowed: bool) -> Call:
    return Call(
        f"/v1/settings/stores/{world.store}",
        seller_tenant_param(world, caller),
        json={"timezone": "America/New_York"},
    )


async def grant_create(world: World, caller: Caller, allowed: bool) -> Call:
    agency = await world.fresh_tenant_id() if allowed else world.agency.tenant_id
    # Each tenant grants its own store, and a scope it holds (no grant gives more).
    store = world.other_store if caller.kind == "stranger" else world.store
    scope = "kpi:read" if "kpi:read" in caller.scopes else "ingest:write"
    return Call(
        "/v1/grants",
        json={"agency_tenant_id": agency, "stores": [store], "scopes": [scope]},
    )


def grant_path(fresh: bool) -> Build:
    async def build(world: World, caller: Caller, allowed: bool) -> Call:
        grant = await world.fresh_grant_id() if fresh and allowed else world.grant_id
        return Call(f"/v1/grants/{grant}", json={"stores": [world.store]})

    return build


async def user_create(world: World, caller: Caller, allowed: bool) -> Call:
    return Call(
        "/v1/users",
        seller_tenant_param(world, caller),
        json={
            "email": f"m-{secrets.token_hex(4)}@example.com",
            "name": "Matrix",
            "password": "long enough password",
            "role": "viewer",
        },
    )


def user_path(fresh: bool) -> Build:
    async def build(world: World, caller: Caller, allowed: bool) -> Call:
        user = await world.fresh_user_id() if fresh and allowed else world.user_id
        return Call(
            f"/v1/users/{user}", seller_tenant_param(world, caller), json={"name": "Renamed"}
        )

    return build


def read_only_connection(store: str) -> dict[str, Any]:
    return {
        "platform": "shopify",
        "store_id": store,
        "marketplace": "US",
        "granted_scopes": ["read_orders"],
        "credentials": {"access_token": "shpat-matrix"},
    }


async def connection_create(world: World, caller: Caller, allowed: bool) -> Call:
    # A store of its own per call, so each allowed caller creates one (201).
    return Call(
        "/v1/connections",
        seller_tenant_param(world, caller),
        json=read_only_connection(f"{world.store}-{secrets.token_hex(3)}"),
    )


def connection_path(fresh: bool) -> Build:
    async def build(world: World, caller: Caller, allowed: bool) -> Call:
        connection = world.connection_id
        if fresh and allowed:
            made = await world.http.post(
                "/v1/connections",
                json=read_only_connection(f"{world.store}-{secrets.token_hex(3)}"),
                headers=world.seller.headers,
            )
            assert made.status_code == 201, made.text
            connection = made.json()["id"]
        return Call(
            f"/v1/connections/{connection}",
            seller_tenant_param(world, caller),
            json={"status": "active"},
        )

    return build


async def tenant_create(world: World, caller: Caller, allowed: bool) -> Call:
    return Call("/v1/tenants", json={"name": "matrix"})


async def tenant_list(world: World, caller: Caller, allowed: bool) -> Call:
    # Every tenant, for the platform admin: the route names none (tenant_id is refused).
    return Call("/v1/tenants")


def signing_keys(body: Any = None) -> Build:
    async def build(world: World, caller: Caller, allowed: bool) -> Call:
        return Call("/v1/signing-keys", json=body)

    return build


def tenant_path(suffix: str = "", body: Any = None) -> Build:
    async def build(world: World, caller: Caller, allowed: bool) -> Call:
        return Call(f"/v1/tenants/{world.seller.tenant_id}{suffix}", json=body)

    return build


async def throwaway_client(world: World, caller: Caller, allowed: bool) -> Call:
    """A client of the seller's made for this call, so revoking it costs nothing."""
    clients = f"/v1/tenants/{world.seller.tenant_id}/clients"
    made = await world.http.post(
        clients, json={"name": "throwaway", "scopes": ["kpi:read"]}, headers=world.seller.headers
    )
    assert made.status_code == 201, made.text
    return Call(f"{clients}/{made.json()['client_id']}")


def no_export_running(path: str) -> Build:
    """``path``, once the seller builds no export: asked while one runs, a new one is
    409 (it would not hold what was written since the running one began)."""

    async def build(world: World, caller: Caller, allowed: bool) -> Call:
        for _ in range(300):
            listed = await world.http.get("/v1/exports", headers=world.seller.headers)
            if all(e["status"] != "running" for e in listed.json()["exports"]):
                break
            await asyncio.sleep(0.1)
        return Call(path, seller_tenant_param(world, caller))

    return build


def export_path(suffix: str = "") -> Build:
    """A ready export of the seller, made once per world by its admin client."""
    made: dict[str, str] = {}

    async def build(world: World, caller: Caller, allowed: bool) -> Call:
        seller = world.seller
        if seller.tenant_id not in made:
            started = await world.http.post("/v1/exports", headers=seller.headers)
            assert started.status_code == 202, started.text
            export_id = started.json()["id"]
            for _ in range(300):
                polled = await world.http.get(f"/v1/exports/{export_id}", headers=seller.headers)
                if polled.json()["status"] != "running":
                    break
                await asyncio.sleep(0.1)
            assert polled.json()["status"] == "ready", polled.text
            made[seller.tenant_id] = export_id
        path = f"/v1/exports/{made[seller.tenant_id]}{suffix}"
        return Call(path, seller_tenant_param(world, caller))

    return build


def issuer_or_grantee(caller: Caller, world: World) -> int | None:
    """A grant is read by the agency that holds it and the seller's admins; anyone else
    (another tenant, a seller token without tenant:admin) gets 404."""
    if caller.kind == "agency":
        return 200
    if caller.kind in ("stranger", "revoked") or (
        caller.kind == "seller" and TENANT_ADMIN not in caller.scopes
    ):
        return 404
    return None


def issuer_only(ok: int) -> Callable[[Caller, World], int | None]:
    def rule(caller: Caller, world: World) -> int | None:
        if caller.kind == "seller" and TENANT_ADMIN in caller.scopes:
            return ok
        if caller.kind in ("stranger", "agency", "revoked") and TENANT_ADMIN in caller.scopes:
            return 404
        return None

    return rule


def whole_tenant_only(caller: Caller, world: World) -> int | None:
    """What sets the whole tenant's figures is refused to a caller limited to some
    stores: an agency's grant, a limited user's role."""
    limited = caller.kind == "agency" or (caller.kind == "seller" and bool(caller.hidden))
    return 403 if limited and "targets:read" in caller.scopes else None


def viewer_scopes_held(caller: Caller, world: World) -> int | None:
    """A user made by the matrix is a viewer: its maker must hold a viewer's scopes."""
    if caller.kind != "seller" or TENANT_ADMIN not in caller.scopes:
        return None
    return None if "kpi:read" in caller.scopes else 403


def own_or_received_grants(caller: Caller, world: World) -> int | None:
    """Any tenant lists its own grants; naming the seller, only the agencies it granted
    (revoked or not) see what they received, and any other tenant is refused."""
    if caller.tenant is None:
        return None
    return 403 if caller.kind == "stranger" else 200


def own_tenant_record(
    ok: int, needs: tuple[str, ...] = ()
) -> Callable[[Caller, World], int | None]:
    """``/v1/tenants/{id}``: the platform admin, or the tenant's own tenant:admin (who
    must also hold ``needs``); another tenant gets 403 (CONTRACT §2), as an unknown
    id would, so ids cannot be probed."""

    def rule(caller: Caller, world: World) -> int | None:
        if caller.kind == "platform":
            return ok
        if caller.kind == "seller":
            held = TENANT_ADMIN in caller.scopes and all(s in caller.scopes for s in needs)
            return ok if held else 403
        if caller.kind in ("stranger", "agency", "revoked"):
            return 403
        return None

    return rule


def owner_only(ok: int) -> Callable[[Caller, World], int | None]:
    """``own_tenant_record``, and of the tenant's users only an owner (the users'
    callers are named by their role); its clients act as owners."""
    record = own_tenant_record(ok)

    def rule(caller: Caller, world: World) -> int | None:
        allowed = record(caller, world)
        not_an_owner = caller.name.startswith("role-") and caller.name != "role-owner"
        return 403 if allowed == ok and not_an_owner else allowed

    return rule


ROUTES: dict[tuple[str, str], Route] = {
    ("POST", "/v1/events"): Route("ingest:write", 202, push_call),
    ("POST", "/v1/events:csv"): Route("ingest:write", 202, csv_call),
    ("GET", "/v1/events/outbox"): Route("ingest:write", 200, plain("/v1/events/outbox")),
    ("GET", "/v1/kpis"): Route("kpi:read", 200, plain("/v1/kpis", **KPI_PARAMS)),
    ("GET", "/v1/kpis/catalog"): Route("kpi:read", 200, plain("/v1/kpis/catalog")),
    ("GET", "/v1/settings/kpi"): Route(TENANT_ADMIN, 200, plain("/v1/settings/kpi")),
    ("PUT", "/v1/settings/kpi"): Route(TENANT_ADMIN, 200, settings_put),
    ("GET", "/v1/settings/stores"): Route(TENANT_ADMIN, 200, plain("/v1/settings/stores")),
    ("PUT", "/v1/settings/stores/{store_id}"): Route(TENANT_ADMIN, 200, store_zone_put),
    ("GET", "/v1/targets/plans"): Route(
        "targets:read", 200, plain("/v1/targets/plans"), rule=whole_tenant_only
    ),
    ("GET", "/v1/audit"): Route(TENANT_ADMIN, 200, plain("/v1/audit")),
    ("POST", "/v1/connections"): Route("connections:manage", 201, connection_create),
    ("GET", "/v1/connections"): Route("connections:manage", 200, plain("/v1/connections")),
    ("PATCH", "/v1/connections/{connection_id}"): Route(
        "connections:manage", 200, connection_path(fresh=False)
    ),
    ("DELETE", "/v1/connections/{connection_id}"): Route(
        "connections:manage", 204, connection_path(fresh=True)
    ),
    ("POST", "/v1/exports"): Route(TENANT_ADMIN, 202, no_export_running("/v1/exports")),
    ("GET", "/v1/exports"): Route(TENANT_ADMIN, 200, plain("/v1/exports")),
    ("GET", "/v1/exports/{export_id}"): Route(TENANT_ADMIN, 200, export_path()),
    ("GET", "/v1/exports/{export_id}/archive"): Route(TENANT_ADMIN, 200, export_path("/archive")),
    ("POST", "/v1/users"): Route(TENANT_ADMIN, 201, user_create, rule=viewer_scopes_held),
    ("GET", "/v1/users"): Route(TENANT_ADMIN, 200, plain("/v1/users")),
    ("GET", "/v1/users/{user_id}"): Route(TENANT_ADMIN, 200, user_path(fresh=False)),
    ("PATCH", "/v1/users/{user_id}"): Route(TENANT_ADMIN, 200, user_path(fresh=False)),
    ("DELETE", "/v1/users/{user_id}"): Route(TENANT_ADMIN, 204, user_path(fresh=True)),
    ("POST", "/v1/grants"): Route(TENANT_ADMIN, 201, grant_create, tenant_data=False),
    ("GET", "/v1/grants"): Route(
        None, 200, plain("/v1/grants"), tenant_data=False, rule=own_or_received_grants
    ),
    ("GET", "/v1/grants/{grant_id}"): Route(
        None, 200, grant_path(fresh=False), tenant_data=False, rule=issuer_or_grantee
    ),
    ("PATCH", "/v1/grants/{grant_id}"): Route(
        TENANT_ADMIN, 200, grant_path(fresh=False), tenant_data=False, rule=issuer_only(200)
    ),
    ("DELETE", "/v1/grants/{grant_id}"): Route(
        TENANT_ADMIN, 204, grant_path(fresh=True), tenant_data=False, rule=issuer_only(204)
    ),
    ("POST", "/v1/tenants"): Route(PLATFORM_ADMIN, 201, tenant_create, tenant_data=False),
    ("GET", "/v1/tenants"): Route(PLATFORM_ADMIN, 200, tenant_list, tenant_data=False),
    ("GET", "/v1/signing-keys"): Route(PLATFORM_ADMIN, 200, signing_keys(), tenant_data=False),
    # A rotation would end the stack's tokens: a body it refuses (test_signing_keys).
    ("POST", "/v1/signing-keys"): Route(
        PLATFORM_ADMIN, 422, signing_keys({"immediately": "never"}), tenant_data=False
    ),
    ("GET", "/v1/tenants/{tenant_id}"): Route(
        None, 200, tenant_path(), tenant_data=False, rule=own_tenant_record(200)
    ),
    ("POST", "/v1/tenants/{tenant_id}/clients"): Route(
        None,
        201,
        tenant_path("/clients", {"name": "matrix", "scopes": ["kpi:read"]}),
        tenant_data=False,
        rule=own_tenant_record(201, needs=("kpi:read",)),
    ),
    # Allowed callers get as far as the confirmation, which names another tenant: the
    # matrix's seller is not erased.
    ("GET", "/v1/tenants/{tenant_id}/clients"): Route(
        None, 200, tenant_path("/clients"), tenant_data=False, rule=own_tenant_record(200)
    ),
    ("DELETE", "/v1/tenants/{tenant_id}/clients/{client_id}"): Route(
        None, 204, throwaway_client, tenant_data=False, rule=own_tenant_record(204)
    ),
    ("DELETE", "/v1/tenants/{tenant_id}"): Route(
        None,
        422,
        tenant_path("", {"confirm": "tn_not_this_one"}),
        tenant_data=False,
        rule=owner_only(422),
    ),
    # Never erased, so allowed callers learn there is no erasure.
    ("GET", "/v1/tenants/{tenant_id}/erasure"): Route(
        None, 404, tenant_path("/erasure"), tenant_data=False, rule=own_tenant_record(404)
    ),
}
# Open by design: the authorization server's own endpoints and metadata, and GraphQL,
# whose fields are checked one by one below.
PUBLIC: dict[tuple[str, str], int | None] = {
    ("GET", "/.well-known/jwks.json"): 200,
    ("GET", "/.well-known/oauth-authorization-server"): 200,
    ("GET", "/.well-known/openid-configuration"): 200,
    ("GET", "/oauth/authorize"): 400,  # no client named: an error page, no redirect
    ("POST", "/oauth/authorize"): 400,
    ("POST", "/oauth/token"): 400,  # no grant_type
    ("POST", "/oauth/revoke"): 400,  # no token
    ("POST", "/oauth/introspect"): 400,
    ("GET", "/oauth/userinfo"): 401,  # a user's token with openid: test_users_login
    ("POST", "/oauth/userinfo"): 401,
    ("GET", "/graphql"): None,
    ("POST", "/graphql"): None,
}
GRAPHQL_FIELDS: dict[str, tuple[str, str]] = {
    # field: (scope, query with $tenantId)
    "kpis": (
        "kpi:read",
        'query($t: ID) { kpis(tenantId: $t, input: {metrics: ["gmv"], from: "2026-03-01", '
        'to: "2026-03-31", grain: TOTAL, groupBy: [STORE]}) '
        "{ rows { dimensions { value } values { metric value } } } }",
    ),
    "kpiCatalog": ("kpi:read", "query($t: ID) { kpiCatalog(tenantId: $t) { id } }"),
}


def expected(route: Route, caller: Caller, world: World) -> int:
    if caller.kind == "anonymous":
        return 401
    if route.rule is not None:
        decided = route.rule(caller, world)
        if decided is not None:
            return decided
    if route.scope == PLATFORM_ADMIN:
        return route.ok if caller.kind == "platform" else 403
    if caller.kind == "platform":
        return 403  # acts for no tenant
    if route.scope is not None and route.scope not in caller.scopes:
        return 403
    if route.tenant_data and caller.kind in ("stranger", "revoked"):
        return 403
    if route.tenant_data and caller.kind == "agency" and route.scope not in GRANTED_SCOPES:
        return 403
    return route.ok


@pytest.fixture
async def world(
    http: httpx.AsyncClient, stack: Stack, new_tenant: NewTenant, admin_token: str
) -> World:
    seller = await new_tenant(name="matrix-seller")
    other = await new_tenant(name="matrix-other")
    agency = await new_tenant(scopes=["kpi:read", "targets:read", "ingest:write"])
    revoked_agency = await new_tenant(scopes=["kpi:read", "targets:read", "ingest:write"])
    store, other_store = f"sA-{secrets.token_hex(3)}", f"sB-{secrets.token_hex(3)}"
    for who, where in ((seller, store), (seller, f"{store}-hidden"), (other, other_store)):
        pushed = await http.post("/v1/events", json={"events": [sale(where)]}, headers=who.headers)
        assert pushed.status_code == 202
    grants = {}
    for holder in (agency, revoked_agency):
        response = await http.post(
            "/v1/grants",
            json={
                "agency_tenant_id": holder.tenant_id,
                "stores": [store],
                "scopes": list(GRANTED_SCOPES),
            },
            headers=seller.headers,
        )
        assert response.status_code == 201
        grants[holder.tenant_id] = response.json()["id"]
    revoke = await http.delete(
        f"/v1/grants/{grants[revoked_agency.tenant_id]}", headers=seller.headers
    )
    assert revoke.status_code == 204
    user = await add_user(http, seller, "viewer")
    connected = await http.post(
        "/v1/connections", json=read_only_connection(store), headers=seller.headers
    )
    assert connected.status_code == 201, connected.text
    world = World(
        http,
        {"Authorization": f"Bearer {admin_token}"},
        seller,
        other,
        agency,
        store,
        other_store,
        grants[agency.tenant_id],
        str(user["id"]),
        str(connected.json()["id"]),
    )

    def bearer(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    everything = frozenset(TENANT_SCOPES)
    world.callers = [
        Caller("seller-admin-client", seller.headers, seller.tenant_id, everything, "seller"),
        Caller("other-seller", other.headers, other.tenant_id, everything, "stranger"),
        Caller(
            "agency",
            agency.headers,
            agency.tenant_id,
            frozenset(GRANTED_SCOPES) | {"ingest:write"},
            "agency",
            # The agency sees the granted store only, never the seller's other one.
            hidden=(f"{store}-hidden",),
        ),
        Caller(
            "agency-after-revocation",
            revoked_agency.headers,
            revoked_agency.tenant_id,
            frozenset(GRANTED_SCOPES) | {"ingest:write"},
            "revoked",
        ),
        Caller(
            "platform-admin", bearer(admin_token), None, frozenset({PLATFORM_ADMIN}), "platform"
        ),
        Caller("nobody", {}, None, frozenset(), "anonymous"),
    ]
    for missing in TENANT_SCOPES:
        kept = sorted(everything - {missing})
        token = await fetch_token(http, seller.client_id, seller.client_secret, " ".join(kept))
        world.callers.append(
            Caller(
                f"seller-without-{missing}",
                bearer(token),
                seller.tenant_id,
                frozenset(kept),
                "seller",
            )
        )
    client_id = await frontend_client(http, seller)
    for role, scopes in ROLES.items():
        person = await add_user(http, seller, role)
        tokens = await user_tokens(http, client_id, person["email"], scope=" ".join(TENANT_SCOPES))
        assert set(tokens["scope"].split()) == set(scopes), role
        world.callers.append(
            Caller(
                f"role-{role}",
                bearer(tokens["access_token"]),
                seller.tenant_id,
                frozenset(scopes),
                "seller",
            )
        )
    # A user whose role is limited to the one store: the other never shows, totals included.
    limited = await add_user(http, seller, "analyst", limits={"stores": [store]})
    tokens = await user_tokens(http, client_id, limited["email"], scope=" ".join(TENANT_SCOPES))
    world.callers.append(
        Caller(
            "role-analyst-limited-to-one-store",
            bearer(tokens["access_token"]),
            seller.tenant_id,
            frozenset(ROLES["analyst"]),
            "seller",
            hidden=(f"{store}-hidden",),
        )
    )
    return world


def leaks(response: httpx.Response, caller: Caller, world: World) -> list[str]:
    """Another tenant's marks found in a successful answer (an error may name the id
    the caller asked about)."""
    if response.status_code >= 400 or caller.kind == "platform":
        return []
    body = response.text
    if caller.kind == "stranger":
        foreign = [world.seller.tenant_id, world.store]
    else:
        foreign = [world.other.tenant_id, world.other_store]
    return [mark for mark in [*foreign, *caller.hidden] if mark in body]


async def test_every_route_answers_every_caller_exactly(
    http: httpx.AsyncClient, stack: Stack, world: World
) -> None:
    document = (await http.get("/openapi.json")).json()
    documented = {
        (method.upper(), path)
        for path, operations in document["paths"].items()
        for method in operations
        if method in ("get", "post", "put", "patch", "delete")
    }
    known = set(ROUTES) | set(PUBLIC)
    assert documented == known, (
        f"routes without a matrix entry: {sorted(documented - known)}; "
        f"entries without a route: {sorted(known - documented)}"
    )
    for (method, path), status in PUBLIC.items():
        if status is not None:
            answer = await http.request(
                method, path, headers={"Content-Type": "application/x-www-form-urlencoded"}
            )
            assert answer.status_code == status, (method, path, answer.text[:200])
    failures = []
    for (method, _), route in ROUTES.items():
        for caller in world.callers:
            want = expected(route, caller, world)
            call = await route.build(world, caller, want == route.ok)
            response = await http.request(
                method,
                call.path,
                params=call.params,
                json=call.json,
                content=call.content,
                headers={**caller.headers, **call.headers},
            )
            if response.status_code != want:
                failures.append(
                    f"{method} {call.path} as {caller.name}: {response.status_code} != {want}: {response.text[:200]}"
                )
            leaked = leaks(response, caller, world)
            if leaked:
                failures.append(f"{method} {call.path} as {caller.name} leaked {leaked}")
            if response.status_code >= 400 and response.status_code != 401:
                assert "Traceback" not in response.text and "SELECT" not in response.text
    assert not failures, "\n".join(failures)


async def test_every_graphql_field_answers_every_caller_exactly(
    http: httpx.AsyncClient, world: World
) -> None:
    schema = await http.post(
        "/graphql",
        json={
            "query": "{ __schema { queryType { fields { name } } mutationType { fields { name } } } }"
        },
        headers=world.seller.headers,
    )
    types = schema.json()["data"]["__schema"]
    fields = {f["name"] for f in types["queryType"]["fields"]}
    if types["mutationType"]:
        fields |= {f["name"] for f in types["mutationType"]["fields"]}
    assert fields == set(GRAPHQL_FIELDS), (
        f"fields without a matrix entry: {fields ^ set(GRAPHQL_FIELDS)}"
    )
    failures = []
    for name, (scope, query) in GRAPHQL_FIELDS.items():
        route = Route(scope, 200, plain("/graphql"))
        for caller in world.callers:
            want = expected(route, caller, world)
            variables = {} if caller.kind == "seller" else {"t": world.seller.tenant_id}
            response = await http.post(
                "/graphql", json={"query": query, "variables": variables}, headers=caller.headers
            )
            body = response.json()
            code = body["errors"][0]["extensions"]["code"] if body.get("errors") else None
            got = {None: 200, "UNAUTHENTICATED": 401, "FORBIDDEN": 403}.get(code, 500)
            if got != want:
                failures.append(
                    f"{name} as {caller.name}: {code} (wanted {want}): {response.text[:200]}"
                )
            leaked = [] if code else leaks(response, caller, world)
            if leaked:
                failures.append(f"{name} as {caller.name} leaked {leaked}")
    assert not failures, "\n".join(failures)
