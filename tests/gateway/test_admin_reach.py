"""What an admin who is not the owner, or is limited to some stores, may hand out: no
client, user, grant or tenant-wide change may reach further than the admin does."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import httpx

from tests.conftest import NewTenant, Stack, TenantClient, fetch_token
from tests.gateway.login import add_user, frontend_client, user_tokens

ADMIN_SCOPE = "tenant:admin kpi:read"


async def signed_in(
    http: httpx.AsyncClient, admin: TenantClient, role: str, scope: str = ADMIN_SCOPE, **extra: Any
) -> tuple[dict[str, Any], TenantClient]:
    """A new user of ``admin``'s tenant, and its own token."""
    client_id = await frontend_client(http, admin)
    user = await add_user(http, admin, role, **extra)
    tokens = await user_tokens(http, client_id, user["email"], scope=scope)
    return user, TenantClient(admin.tenant_id, client_id, "", tokens["access_token"])


async def test_an_admin_cannot_make_a_client_that_acts_as_the_owner(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    """A tenant:admin client has no role, so it may change the owner's password: an
    admin who could make one would take the tenant over."""
    tenant = await new_tenant()
    owner, owner_user = await signed_in(http, tenant, "owner")
    owner_headers = owner_user.headers
    admin_headers = (await signed_in(http, tenant, "admin"))[1].headers
    clients = f"/v1/tenants/{tenant.tenant_id}/clients"
    refused = await http.post(
        clients, json={"name": "mine", "scopes": ["tenant:admin"]}, headers=admin_headers
    )
    assert refused.status_code == 403, refused.text
    assert refused.json()["detail"] == (
        "only an owner can create a client with tenant:admin, which acts as one"
    )
    # Other scopes, and the owner itself, are as before.
    reader = await http.post(
        clients, json={"name": "reader", "scopes": ["kpi:read"]}, headers=admin_headers
    )
    assert reader.status_code == 201, reader.text
    by_owner = await http.post(
        clients, json={"name": "ops", "scopes": ["tenant:admin"]}, headers=owner_headers
    )
    assert by_owner.status_code == 201, by_owner.text
    # The owner's password stays the owner's business.
    taken = await http.patch(
        f"/v1/users/{owner['id']}", json={"password": "taken over at last"}, headers=admin_headers
    )
    assert taken.status_code == 403


async def test_a_limited_admin_hands_out_nothing_wider_than_itself(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant()
    unlimited = await add_user(http, tenant, "admin")
    me, limited = await signed_in(http, tenant, "admin", limits={"stores": ["s1"]})
    headers = limited.headers
    # A client is never limited: none for a limited user.
    client = await http.post(
        f"/v1/tenants/{tenant.tenant_id}/clients",
        json={"name": "mine", "scopes": ["kpi:read"]},
        headers=headers,
    )
    assert client.status_code == 403
    assert client.json()["detail"] == (
        "a client reaches the whole tenant; this user's role is limited"
    )
    # Users: within its own limits only, and it cannot lift its own.
    for limits in (None, {"stores": ["s1", "s2"]}, {"marketplaces": ["US"]}):
        wider = await http.post(
            "/v1/users",
            json={
                "email": f"wider-{secrets.token_hex(4)}@example.com",
                "name": "Wider",
                "password": "a long password",
                "role": "viewer",
                "limits": limits,
            },
            headers=headers,
        )
        assert wider.status_code == 403, (limits, wider.text)
        assert wider.json()["errors"] == [
            {"field": "limits", "reason": "wider than this caller's own limits"}
        ]
    narrower = await add_user(
        http, limited, "viewer", limits={"stores": ["s1"], "categories": ["Lamps"]}
    )
    lifted = await http.patch(f"/v1/users/{me['id']}", json={"limits": None}, headers=headers)
    assert lifted.status_code == 403
    # Users who see more are none of its business: not listed, not found, not changed.
    listed = await http.get("/v1/users", headers=headers)
    assert {u["id"] for u in listed.json()["users"]} == {me["id"], narrower["id"]}
    for call in (
        http.get(f"/v1/users/{unlimited['id']}", headers=headers),
        http.patch(
            f"/v1/users/{unlimited['id']}", json={"password": "taken over at last"}, headers=headers
        ),
    ):
        assert (await call).status_code == 404
    # What reaches the whole tenant: grants, KPI settings, the audit.
    agency = await new_tenant(scopes=["kpi:read"])
    grant = await http.post(
        "/v1/grants",
        json={"agency_tenant_id": agency.tenant_id, "stores": ["s1"], "scopes": ["kpi:read"]},
        headers=headers,
    )
    assert grant.status_code == 403
    issued = await http.post(
        "/v1/grants",
        json={"agency_tenant_id": agency.tenant_id, "stores": ["s2"], "scopes": ["kpi:read"]},
        headers=tenant.headers,
    )
    assert issued.status_code == 201
    grant_path = f"/v1/grants/{issued.json()['id']}"
    assert (await http.get("/v1/grants", headers=headers)).json()["grants"] == []
    assert (await http.get(grant_path, headers=headers)).status_code == 404
    assert (await http.delete(grant_path, headers=headers)).status_code == 403
    settings = await http.put("/v1/settings/kpi", json={"gmv_includes_tax": True}, headers=headers)
    assert settings.status_code == 403
    assert (await http.get("/v1/settings/kpi", headers=headers)).status_code == 200
    assert (await http.get("/v1/audit", headers=headers)).status_code == 403
    # Time zones of other stores are not listed.
    for store in ("s1", "s2"):
        zone = await http.put(
            f"/v1/settings/stores/{store}",
            json={"timezone": "Asia/Tokyo"},
            headers=tenant.headers,
        )
        assert zone.status_code == 200, zone.text
    zones = (await http.get("/v1/settings/stores", headers=headers)).json()["stores"]
    assert [z["store_id"] for z in zones] == ["s1"]


async def test_admins_list_and_revoke_their_tenants_clients(
    http: httpx.AsyncClient, stack: Stack, new_tenant: NewTenant
) -> None:
    """A leaked ERP credential is revoked by the tenant itself, its tokens with it."""
    tenant = await new_tenant()
    clients = f"/v1/tenants/{tenant.tenant_id}/clients"
    made = await http.post(
        clients,
        json={"name": "erp", "scopes": ["kpi:read", "ingest:write"]},
        headers=tenant.headers,
    )
    assert made.status_code == 201, made.text
    erp = made.json()
    token = await fetch_token(http, erp["client_id"], erp["client_secret"])
    bearer = {"Authorization": f"Bearer {token}"}
    assert (await http.get("/v1/kpis/catalog", headers=bearer)).status_code == 200

    listed = await http.get(clients, headers=tenant.headers)
    assert listed.status_code == 200, listed.text
    by_id = {c["client_id"]: c for c in listed.json()["clients"]}
    assert {tenant.client_id, erp["client_id"]} <= set(by_id)
    assert by_id[erp["client_id"]]["revoked_at"] is None
    assert "secret" not in listed.text
    # An admin who is not the owner cannot revoke the tenant:admin client, which acts
    # as an owner; nobody of another tenant reaches either, and a limited user neither.
    _, admin = await signed_in(http, tenant, "admin")
    refused = await http.delete(f"{clients}/{tenant.client_id}", headers=admin.headers)
    assert refused.status_code == 403
    _, limited = await signed_in(http, tenant, "admin", limits={"stores": ["s1"]})
    assert (await http.get(clients, headers=limited.headers)).status_code == 403
    stranger = await new_tenant()
    assert (await http.get(clients, headers=stranger.headers)).status_code == 403
    assert (await http.delete(f"{clients}/nope", headers=tenant.headers)).status_code == 404
    other = f"/v1/tenants/{stranger.tenant_id}/clients/{stranger.client_id}"
    assert (await http.delete(other, headers=tenant.headers)).status_code == 403

    revoked = await http.delete(f"{clients}/{erp['client_id']}", headers=admin.headers)
    assert revoked.status_code == 204, revoked.text
    # Its token is refused from the next request on, at the gateway and (within a
    # second) on a service's own port; it gets no new one.
    at_gateway = await http.get("/v1/kpis/catalog", headers=bearer)
    assert at_gateway.status_code == 401
    assert at_gateway.json()["detail"] == "token has been revoked"
    async with httpx.AsyncClient(timeout=10) as direct:
        for _ in range(25):
            own_port = await direct.get(f"{stack.url('metrics')}/v1/kpis/catalog", headers=bearer)
            if own_port.status_code == 401:
                break
            await asyncio.sleep(0.2)
    assert own_port.status_code == 401
    again = await http.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(erp["client_id"], erp["client_secret"]),
    )
    assert again.status_code == 401 and again.json()["error"] == "invalid_client"
    relisted = {
        c["client_id"]: c
        for c in (await http.get(clients, headers=tenant.headers)).json()["clients"]
    }
    assert relisted[erp["client_id"]]["revoked_at"] is not None
    twice = await http.delete(f"{clients}/{erp['client_id']}", headers=tenant.headers)
    assert twice.status_code == 204
    # The tenant's other clients keep working.
    assert (await http.get("/v1/kpis/catalog", headers=tenant.headers)).status_code == 200


async def test_a_revoked_frontends_sign_ins_introspect_as_inactive(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant()
    client_id = await frontend_client(http, tenant)
    person = await add_user(http, tenant, "viewer")
    tokens = await user_tokens(http, client_id, person["email"])

    async def active(token: str) -> bool:
        answer = await http.post(
            "/oauth/introspect",
            data={"token": token},
            auth=(tenant.client_id, tenant.client_secret),
        )
        return bool(answer.json()["active"])

    assert await active(tokens["refresh_token"]) and await active(tokens["access_token"])
    clients = f"/v1/tenants/{tenant.tenant_id}/clients"
    revoked = await http.delete(f"{clients}/{client_id}", headers=tenant.headers)
    assert revoked.status_code == 204
    assert not await active(tokens["refresh_token"])
    assert not await active(tokens["access_token"])


def connection(store: str, marketplace: str) -> dict[str, Any]:
    return {
        "platform": "shopify",
        "store_id": store,
        "marketplace": marketplace,
        "granted_scopes": ["read_orders"],
        "credentials": {"access_token": f"shpat-{store}"},
    }


async def test_admins_limited_by_marketplace_or_category_keep_off_other_stores(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    """A store's time zone and connection reach every fact of it: an admin limited to
    US manages US connections only, and one limited to some marketplaces or categories
    neither lists nor moves store time zones."""
    tenant = await new_tenant()
    made = await http.post("/v1/connections", json=connection("s-mx", "MX"), headers=tenant.headers)
    assert made.status_code == 201, made.text
    mx = f"/v1/connections/{made.json()['id']}"
    scope = f"{ADMIN_SCOPE} connections:manage"
    _, us_admin = await signed_in(http, tenant, "admin", scope, limits={"marketplaces": ["US"]})
    _, lamps_admin = await signed_in(http, tenant, "admin", scope, limits={"categories": ["Lamps"]})
    us = us_admin.headers
    assert (await http.get("/v1/connections", headers=us)).json()["connections"] == []
    assert (await http.patch(mx, json={"status": "paused"}, headers=us)).status_code == 404
    assert (await http.delete(mx, headers=us)).status_code == 404
    elsewhere = await http.post("/v1/connections", json=connection("s-mx2", "MX"), headers=us)
    assert elsewhere.status_code == 403
    own = await http.post("/v1/connections", json=connection("s-us", "US"), headers=us)
    assert own.status_code == 201, own.text
    listed = (await http.get("/v1/connections", headers=us)).json()["connections"]
    assert [c["store_id"] for c in listed] == ["s-us"]
    assert (await http.get("/v1/connections", headers=lamps_admin.headers)).status_code == 403
    for who in (us_admin, lamps_admin):
        zone = await http.put(
            "/v1/settings/stores/s-mx", json={"timezone": "Pacific/Kiritimati"}, headers=who.headers
        )
        assert zone.status_code == 403, zone.text
        assert (await http.get("/v1/settings/stores", headers=who.headers)).status_code == 403


async def test_a_person_limited_to_a_marketplace_may_write_its_code_in_any_case(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    """KPI questions read marketplace codes in any case (``us`` asks for US): a person
    limited to US asking for ``us`` asks for its own marketplace, REST and GraphQL."""
    tenant = await new_tenant()
    _, us_viewer = await signed_in(
        http, tenant, "viewer", "kpi:read", limits={"marketplaces": ["US"]}
    )
    month = {"metrics": "gmv", "from": "2026-03-01", "to": "2026-03-31", "grain": "total"}
    for code in ("US", "us", "Us"):
        answer = await http.get(
            "/v1/kpis", params={**month, "marketplaces": code}, headers=us_viewer.headers
        )
        assert answer.status_code == 200, (code, answer.text)
    mx = await http.get(
        "/v1/kpis", params={**month, "marketplaces": "mx"}, headers=us_viewer.headers
    )
    assert mx.status_code == 403 and 'marketplace "MX"' in mx.json()["detail"]
    asked = await http.post(
        "/graphql",
        json={
            "query": '{ kpis(input: {metrics: ["gmv"], from: "2026-03-01", to: "2026-03-31",'
            ' grain: TOTAL, filters: {marketplaces: ["us"]}}) { currency } }'
        },
        headers=us_viewer.headers,
    )
    assert asked.status_code == 200 and "errors" not in asked.json(), asked.text


async def test_no_caller_makes_a_user_with_a_scope_it_lacks(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    """A client of user management alone would otherwise make an owner with a password
    of its choosing and sign in as it, with every scope."""
    tenant = await new_tenant()
    narrow = await http.post(
        f"/v1/tenants/{tenant.tenant_id}/clients",
        json={"name": "hr", "scopes": ["tenant:admin"]},
        headers=tenant.headers,
    )
    assert narrow.status_code == 201, narrow.text
    token = await fetch_token(http, narrow.json()["client_id"], narrow.json()["client_secret"])
    hr = {"Authorization": f"Bearer {token}"}
    for role in ("owner", "admin", "viewer"):
        made = await http.post(
            "/v1/users",
            json={"email": f"{role}@x.example", "name": "U", "password": "p" * 12, "role": role},
            headers=hr,
        )
        assert made.status_code == 403, (role, made.text)
        assert made.json()["error"] == "insufficient_scope"
    viewer = await add_user(http, tenant, "viewer")
    for change in ({"role": "admin"}, {"password": "mine at last!"}):
        taken = await http.patch(f"/v1/users/{viewer['id']}", json=change, headers=hr)
        assert taken.status_code == 403, (change, taken.text)
    # Nor demoted and given a password in one request: an owner giving the role back
    # would hand the caller an admin's sign-in.
    admin = await add_user(http, tenant, "admin")
    narrow_reader = await http.post(
        f"/v1/tenants/{tenant.tenant_id}/clients",
        json={"name": "hr-reader", "scopes": ["tenant:admin", "kpi:read"]},
        headers=tenant.headers,
    )
    reader_token = await fetch_token(
        http, narrow_reader.json()["client_id"], narrow_reader.json()["client_secret"]
    )
    demoted = await http.patch(
        f"/v1/users/{admin['id']}",
        json={"role": "viewer", "password": "mine at last!"},
        headers={"Authorization": f"Bearer {reader_token}"},
    )
    assert demoted.status_code == 403, demoted.text
    # Refusals of any body are in the API's words, as events' are.
    empty = await http.post(
        f"/v1/tenants/{tenant.tenant_id}/clients",
        json={"name": "none", "scopes": []},
        headers=tenant.headers,
    )
    assert empty.status_code == 422, empty.text
    assert empty.json()["errors"] == [{"field": "scopes", "reason": "must have at least 1 item(s)"}]
    # What gives the user nothing more stays the caller's to do.
    renamed = await http.patch(f"/v1/users/{viewer['id']}", json={"name": "V"}, headers=hr)
    assert renamed.status_code == 200, renamed.text
    disabled = await http.patch(f"/v1/users/{viewer['id']}", json={"disabled": True}, headers=hr)
    assert disabled.status_code == 200, disabled.text
    # Enabled again, or its limits lifted or widened, a user signs in with its role
    # over more: only a caller holding that role's scopes gives it that.
    limited = await add_user(http, tenant, "viewer", limits={"stores": ["s1", "s2"]})
    user = f"/v1/users/{limited['id']}"
    narrowed = await http.patch(user, json={"limits": {"stores": ["s1"]}}, headers=hr)
    assert narrowed.status_code == 200, narrowed.text
    for widening in (
        {"limits": None},
        {"limits": {"stores": ["s1", "s3"]}},
        {"limits": {"marketplaces": ["US"]}},
    ):
        refused = await http.patch(user, json=widening, headers=hr)
        assert refused.status_code == 403, (widening, refused.text)
        assert refused.json()["error"] == "insufficient_scope"
    again = await http.patch(f"/v1/users/{viewer['id']}", json={"disabled": False}, headers=hr)
    assert again.status_code == 403 and again.json()["error"] == "insufficient_scope"
    enabled = await http.patch(
        f"/v1/users/{viewer['id']}", json={"disabled": False}, headers=tenant.headers
    )
    assert enabled.status_code == 200, enabled.text
