"""Agency grants end to end (CONTRACT §7): issue, use, narrow, revoke, expire.

The agency reaches the seller through the gateway and directly at each service: the
grant is checked on every request wherever it lands.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from services.gateway.tenants.internal import TENANT_PROFILE_PATH
from tests.conftest import NewTenant, Stack, TenantClient
from tests.gateway.test_admin_reach import signed_in
from tests.metrics.test_kpis import line

KPIS = """
query Kpis($input: KpiQueryInput!, $tenantId: ID) {
  kpis(input: $input, tenantId: $tenantId) { rows { period dimensions { key value } values { metric value } } }
}
"""
CATALOG = "query Catalog($tenantId: ID) { kpiCatalog(tenantId: $tenantId) { id description } }"
MARCH = {"metrics": ["gmv"], "from": "2026-03-01", "to": "2026-03-31", "grain": "TOTAL"}
REST_MARCH = {"metrics": "gmv", "from": "2026-03-01", "to": "2026-03-31", "grain": "total"}


def sale(event_id: str, store: str, price: str) -> dict[str, Any]:
    return line(event_id, f"o-{event_id}", 1, price, "2026-03-10T18:00:00Z", store=store)


def in_days(days: float) -> str:
    return (datetime.now(UTC) + timedelta(days=days)).isoformat()


async def graphql(
    http: httpx.AsyncClient, who: TenantClient, query: str, **variables: Any
) -> dict[str, Any]:
    response = await http.post(
        "/graphql", json={"query": query, "variables": variables}, headers=who.headers
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def march_gmv(http: httpx.AsyncClient, who: TenantClient, tenant_id: str) -> Any:
    body = await graphql(http, who, KPIS, input=MARCH, tenantId=tenant_id)
    if body.get("errors"):
        return body["errors"][0]["extensions"]["code"]
    rows = body["data"]["kpis"]["rows"]
    return rows[0]["values"][0]["value"] if rows else None


async def wait_for(http: httpx.AsyncClient, who: TenantClient, tenant_id: str, want: Any) -> None:
    deadline = time.monotonic() + 30
    seen = None
    while time.monotonic() < deadline:
        seen = await march_gmv(http, who, tenant_id)
        if seen == want:
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"wanted {want}, last saw {seen}")


async def test_an_agency_sees_only_what_the_grant_allows_until_it_is_revoked(
    http: httpx.AsyncClient, stack: Stack, new_tenant: NewTenant
) -> None:
    seller = await new_tenant()
    agency = await new_tenant(scopes=["kpi:read", "ingest:write", "targets:read"])
    pushed = await http.post(
        "/v1/events",
        json={"events": [sale("a", "acme-us", "10.00"), sale("b", "acme-mx", "5.00")]},
        headers=seller.headers,
    )
    assert pushed.status_code == 202
    await wait_for(http, seller, seller.tenant_id, 15.0)

    # Before any grant: FORBIDDEN, never an empty answer, in GraphQL and in REST.
    assert await march_gmv(http, agency, seller.tenant_id) == "FORBIDDEN"
    direct = await http.get(
        f"{stack.url('metrics')}/v1/kpis",
        params={**REST_MARCH, "tenant_id": seller.tenant_id},
        headers=agency.headers,
    )
    assert direct.status_code == 403 and seller.tenant_id in direct.json()["detail"]

    created = await http.post(
        "/v1/grants",
        json={
            "agency_tenant_id": agency.tenant_id,
            "stores": ["acme-us"],
            "scopes": ["kpi:read"],
            "expires_at": in_days(30),
        },
        headers=seller.headers,
    )
    assert created.status_code == 201, created.text
    grant = created.json()
    assert grant["status"] == "active" and grant["tenant_id"] == seller.tenant_id

    # Only the granted store counts, totals included, in every way of asking.
    assert await march_gmv(http, agency, seller.tenant_id) == 10.0
    by_store = await http.get(
        "/v1/kpis",
        params={**REST_MARCH, "group_by": "store", "tenant_id": seller.tenant_id},
        headers=agency.headers,
    )
    assert by_store.status_code == 200, by_store.text
    assert [r["dimensions"] for r in by_store.json()["rows"]] == [
        [{"key": "store", "value": "acme-us"}]
    ]
    outside = await http.get(
        "/v1/kpis",
        params={**REST_MARCH, "stores": "acme-mx", "tenant_id": seller.tenant_id},
        headers=agency.headers,
    )
    assert outside.status_code == 403 and "acme-mx" in outside.json()["detail"]
    # The catalog describes the seller's definitions to the agency, its own without.
    taxed = await http.put(
        "/v1/settings/kpi", json={"gmv_includes_tax": True}, headers=seller.headers
    )
    assert taxed.status_code == 200, taxed.text
    for tenant_id, words in ((seller.tenant_id, "tax included"), (None, "tax excluded")):
        catalog = await graphql(http, agency, CATALOG, tenantId=tenant_id)
        described = {k["id"]: k["description"] for k in catalog["data"]["kpiCatalog"]}
        assert words in described["gmv"], described["gmv"]
    # The agency's own data stays its own: without tenant_id it reads itself.
    assert await march_gmv(http, agency, agency.tenant_id) == 0.0

    # Scopes the grant lacks are refused even though the agency's token holds them.
    plans = await http.get(
        f"{stack.url('targets')}/v1/targets/plans",
        params={"tenant_id": seller.tenant_id},
        headers=agency.headers,
    )
    # Forbidden, not insufficient_scope: a token asked again with it would not help.
    assert (plans.status_code, plans.json()) == (
        403,
        {
            "error": "forbidden",
            "detail": f"the grant of tenant {seller.tenant_id} does not give targets:read; "
            "its seller may add it",
        },
    )
    push_as_agency = await http.post(
        "/v1/events",
        params={"tenant_id": seller.tenant_id},
        json={"events": [sale("c", "acme-us", "1.00")]},
        headers=agency.headers,
    )
    assert push_as_agency.status_code == 403
    settings = await http.get(
        "/v1/settings/kpi", params={"tenant_id": seller.tenant_id}, headers=agency.headers
    )
    assert settings.status_code == 403

    # Widened: now the agency may push, but only into the granted store.
    patched = await http.patch(
        f"/v1/grants/{grant['id']}",
        json={"scopes": ["kpi:read", "ingest:write", "targets:read"]},
        headers=seller.headers,
    )
    assert patched.status_code == 200 and patched.json()["stores"] == ["acme-us"]
    wrong_store = await http.post(
        f"{stack.url('ingest')}/v1/events",
        params={"tenant_id": seller.tenant_id},
        json={"events": [sale("c", "acme-us", "1.00"), sale("d", "acme-mx", "1.00")]},
        headers=agency.headers,
    )
    assert wrong_store.status_code == 403
    assert wrong_store.json()["errors"] == [
        {
            "index": 1,
            "field": "source.store_id",
            "reason": "store acme-mx is outside this caller's reach",
        }
    ]
    # An FX rate changes every store's numbers, whatever store it names.
    rate = {
        "event_id": "fx-1", "type": "fx_rate",
        "source": {"platform": "amazon", "store_id": "acme-us", "marketplace": "US"},
        "occurred_at": "2026-03-01T00:00:00Z",
        "payload": {"date": "2026-03-01", "base": "USD", "quote": "MXN", "rate": "17"},
    }  # fmt: skip
    tenant_wide = await http.post(
        "/v1/events", params={"tenant_id": seller.tenant_id}, json={"events": [rate]},
        headers=agency.headers,
    )  # fmt: skip
    assert tenant_wide.status_code == 403
    assert tenant_wide.json()["errors"][0]["field"] == "type"
    # So does a unit cost: it prices every store without a cost of its own.
    cost = {
        **rate, "event_id": "cost-1", "type": "unit_cost",
        "payload": {"sku": "LAMP", "cost": {"amount": "2999.00", "currency": "USD"},
                    "effective_from": "2026-01-01"},
    }  # fmt: skip
    pricing = await http.post(
        "/v1/events",
        params={"tenant_id": seller.tenant_id}, json={"events": [cost]}, headers=agency.headers,
    )  # fmt: skip
    assert pricing.status_code == 403
    assert pricing.json()["errors"] == [
        {"index": 0, "field": "type",
         "reason": "unit_cost prices every store that has no cost of its own; "
                   "this caller may reach only some"}
    ]  # fmt: skip
    pushed_for_seller = await http.post(
        "/v1/events",
        params={"tenant_id": seller.tenant_id},
        json={"events": [sale("c", "acme-us", "1.00")]},
        headers=agency.headers,
    )
    assert pushed_for_seller.status_code == 202, pushed_for_seller.text
    await wait_for(http, seller, seller.tenant_id, 16.0)
    # The seller's acme-mx sale "b" cannot be replaced by a higher version naming the
    # granted store: that would move it out of a store the agency may not touch.
    moved = {**sale("b", "acme-us", "0.01"), "version": 2}
    taken_over = await http.post(
        "/v1/events", params={"tenant_id": seller.tenant_id}, json={"events": [moved]},
        headers=agency.headers,
    )  # fmt: skip
    assert taken_over.status_code == 403
    assert taken_over.json()["errors"] == [
        {"index": 0, "field": "event_id",
         "reason": "is taken by an event outside what this caller may reach"}
    ]  # fmt: skip
    # The same version too: which version is stored there is not the agency's to learn.
    again = await http.post(
        "/v1/events", params={"tenant_id": seller.tenant_id},
        json={"events": [sale("b", "acme-us", "0.01")]}, headers=agency.headers,
    )  # fmt: skip
    assert (again.status_code, again.json()["errors"]) == (403, taken_over.json()["errors"])
    as_csv = await http.post(
        "/v1/events:csv",
        params={"tenant_id": seller.tenant_id, "type": "order_line"},
        content="event_id,version,platform,store_id,marketplace,order_id,line_id,sku,quantity,"
        "unit_price,currency,status,purchased_at\n"
        "b,2,amazon,acme-us,US,o-b,1,LAMP,1,0.01,USD,shipped,2026-03-10T18:00:00Z\n",
        headers={**agency.headers, "Content-Type": "text/csv"},
    )
    assert as_csv.status_code == 403 and as_csv.json()["errors"][0]["row"] == 2, as_csv.text
    # The seller itself may still move its own sale.
    assert (
        await http.post("/v1/events", json={"events": [moved]}, headers=seller.headers)
    ).status_code == 202
    await wait_for(http, seller, seller.tenant_id, 11.01)
    # Plans set the whole tenant's figures: not for an agency of some stores.
    plans = await http.get(
        "/v1/targets/plans", params={"tenant_id": seller.tenant_id}, headers=agency.headers
    )
    assert plans.status_code == 403, plans.text
    assert plans.json()["detail"].startswith("this needs access to the whole tenant")

    # Both sides list it; nobody else can read, change or revoke it.
    for who in (seller, agency):
        listed = await http.get("/v1/grants", headers=who.headers)
        assert grant["id"] in [g["id"] for g in listed.json()["grants"]]
    stranger = await new_tenant()
    assert (
        await http.get(f"/v1/grants/{grant['id']}", headers=stranger.headers)
    ).status_code == 404
    assert (
        await http.patch(
            f"/v1/grants/{grant['id']}", json={"stores": ["x"]}, headers=stranger.headers
        )
    ).status_code == 404
    assert (
        await http.delete(f"/v1/grants/{grant['id']}", headers=agency.headers)
    ).status_code == 403

    # Revoked: the very next request fails everywhere, with the same token.
    revoked = await http.delete(f"/v1/grants/{grant['id']}", headers=seller.headers)
    assert revoked.status_code == 204
    assert await march_gmv(http, agency, seller.tenant_id) == "FORBIDDEN"
    for url, method in (
        (f"{stack.url('metrics')}/v1/kpis", "GET"),
        (f"{stack.url('targets')}/v1/targets/plans", "GET"),
        (f"{stack.url('ingest')}/v1/events/outbox", "GET"),
    ):
        answer = await http.request(
            method,
            url,
            params={**REST_MARCH, "tenant_id": seller.tenant_id},
            headers=agency.headers,
        )
        assert answer.status_code == 403, (url, answer.text)
    status = await http.get(f"/v1/grants/{grant['id']}", headers=agency.headers)
    assert status.json()["status"] == "revoked"
    again = await http.delete(f"/v1/grants/{grant['id']}", headers=seller.headers)
    assert again.status_code == 204
    assert (
        await http.patch(
            f"/v1/grants/{grant['id']}", json={"stores": ["a"]}, headers=seller.headers
        )
    ).status_code == 409


async def test_an_expired_grant_stops_working_by_itself(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    seller = await new_tenant()
    agency = await new_tenant(scopes=["kpi:read"])
    created = await http.post(
        "/v1/grants",
        json={
            "agency_tenant_id": agency.tenant_id,
            "stores": ["acme-us"],
            "scopes": ["kpi:read"],
            "expires_at": (datetime.now(UTC) + timedelta(seconds=2)).isoformat(),
        },
        headers=seller.headers,
    )
    assert created.status_code == 201
    assert await march_gmv(http, agency, seller.tenant_id) == 0.0
    await asyncio.sleep(2.2)
    assert await march_gmv(http, agency, seller.tenant_id) == "FORBIDDEN"
    listed = await http.get("/v1/grants", headers=agency.headers)
    assert listed.json()["grants"][0]["status"] == "expired"
    # Once expired, the seller may issue a new grant to the same agency.
    renewed = await http.post(
        "/v1/grants",
        json={"agency_tenant_id": agency.tenant_id, "stores": ["acme-us"], "scopes": ["kpi:read"]},
        headers=seller.headers,
    )
    assert renewed.status_code == 201 and renewed.json()["expires_at"] is None
    # The expired one cannot be revived beside it: one active grant per agency.
    revived = await http.patch(
        f"/v1/grants/{created.json()['id']}", json={"expires_at": None}, headers=seller.headers
    )
    assert revived.status_code == 409 and renewed.json()["id"] in revived.json()["detail"]
    # Once the new one is revoked, the old one may come back.
    revoked = await http.delete(f"/v1/grants/{renewed.json()['id']}", headers=seller.headers)
    assert revoked.status_code == 204
    assert await march_gmv(http, agency, seller.tenant_id) == "FORBIDDEN"
    revived = await http.patch(
        f"/v1/grants/{created.json()['id']}", json={"expires_at": None}, headers=seller.headers
    )
    assert revived.status_code == 200 and revived.json()["status"] == "active"
    assert await march_gmv(http, agency, seller.tenant_id) == 0.0


async def test_bad_grants_name_the_field(http: httpx.AsyncClient, new_tenant: NewTenant) -> None:
    seller = await new_tenant()
    agency = await new_tenant(scopes=["kpi:read"])
    good = {"agency_tenant_id": agency.tenant_id, "stores": ["s1"], "scopes": ["kpi:read"]}
    bad: list[tuple[dict[str, Any], str]] = [
        ({"agency_tenant_id": seller.tenant_id}, "agency_tenant_id"),
        ({"agency_tenant_id": "tn_nobody"}, "agency_tenant_id"),
        ({"stores": []}, "stores"),
        ({"scopes": ["kpi:read", "tenant:admin"]}, "scopes.1"),
        ({"scopes": ["connections:manage"]}, "scopes.0"),
        ({"expires_at": in_days(-1)}, "expires_at"),
        ({"expires_at": "2030-01-01T00:00:00"}, "expires_at"),
        ({"color": "red"}, "color"),
    ]
    for change, field in bad:
        response = await http.post("/v1/grants", json={**good, **change}, headers=seller.headers)
        assert response.status_code == 422, (change, response.text)
        assert [e["field"] for e in response.json()["errors"]] == [field], change
    first = await http.post("/v1/grants", json=good, headers=seller.headers)
    assert first.status_code == 201
    second = await http.post("/v1/grants", json=good, headers=seller.headers)
    assert second.status_code == 409 and first.json()["id"] in second.json()["detail"]
    patches: list[tuple[dict[str, Any], str]] = [
        ({"stores": None}, "stores"),
        ({"scopes": ["platform:admin"]}, "scopes.0"),
    ]
    for change, field in patches:
        response = await http.patch(
            f"/v1/grants/{first.json()['id']}", json=change, headers=seller.headers
        )
        assert response.status_code == 422 and response.json()["errors"][0]["field"] == field
    nulled = await http.patch(
        f"/v1/grants/{first.json()['id']}",
        json={"stores": None, "scopes": None},
        headers=seller.headers,
    )
    mixed = await http.patch(
        f"/v1/grants/{first.json()['id']}",
        json={"stores": None, "scopes": "kpi:read"},
        headers=seller.headers,
    )
    # With the body's other errors, at once: a null was named only once they were mended.
    assert [e["field"] for e in mixed.json()["errors"]] == ["stores", "scopes"], mixed.text
    # Both at once, as a user's are: the first alone was named.
    assert nulled.json()["errors"] == [
        {"field": "stores", "reason": "cannot be null; leave it out to keep it"},
        {"field": "scopes", "reason": "cannot be null; leave it out to keep it"},
    ]
    # Named as the field, once: not as the branches of a union (stores.list[...].0 and
    # stores.none "Input should be None").
    blank = await http.patch(
        f"/v1/grants/{first.json()['id']}", json={"stores": [" "]}, headers=seller.headers
    )
    assert [e["field"] for e in blank.json()["errors"]] == ["stores.0"], blank.text
    # Issuing needs tenant:admin; the agency's kpi:read token cannot.
    denied = await http.post(
        "/v1/grants",
        json={**good, "agency_tenant_id": seller.tenant_id},
        headers=agency.headers,
    )
    assert denied.status_code == 403 and denied.json()["error"] == "insufficient_scope"


async def test_an_agency_users_own_limits_hold_in_the_sellers_tenant(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    """A person of the agency limited to US (or to some stores) sees the seller's US
    stores only: the grant widens no one's role. Marketplaces and categories mean the
    same in every tenant; store ids are taken as the seller's."""
    seller = await new_tenant()
    agency = await new_tenant()
    in_gb = {"store": "s2", "marketplace": "GB", "currency": "GBP"}
    gb_sale = line("g1", "o-g1", 1, "20.00", "2026-03-10T18:00:00Z", **in_gb)
    pushed = await http.post(
        "/v1/events", json={"events": [sale("u1", "s1", "10.00"), gb_sale]}, headers=seller.headers
    )
    assert pushed.status_code == 202, pushed.text
    granted = await http.post(
        "/v1/grants",
        json={"agency_tenant_id": agency.tenant_id, "stores": ["s1", "s2"], "scopes": ["kpi:read"]},
        headers=seller.headers,
    )
    assert granted.status_code == 201, granted.text
    await wait_for(http, agency, seller.tenant_id, None)  # GBP has no rate: null in USD
    params = {**REST_MARCH, "tenant_id": seller.tenant_id, "group_by": "store", "currency": "GBP"}
    for limits, stores in (
        ({"marketplaces": ["US"]}, ["s1"]),
        ({"stores": ["s2", "elsewhere"]}, ["s2"]),
        (None, ["s1", "s2"]),
    ):
        _, person = await signed_in(http, agency, "analyst", limits=limits)
        answer = await http.get("/v1/kpis", params=params, headers=person.headers)
        assert answer.status_code == 200, answer.text
        seen = [row["dimensions"][0]["value"] for row in answer.json()["rows"]]
        assert seen == stores, (limits, answer.text)
        # The grant it reads names the stores it reaches, not the seller's others.
        if limits is None or "stores" in limits:
            [grant] = (await http.get("/v1/grants", headers=person.headers)).json()["grants"]
            assert grant["stores"] == stores, (limits, grant)
            one = await http.get(f"/v1/grants/{grant['id']}", headers=person.headers)
            assert one.json()["stores"] == stores
    # No granted store left: refused, never an answer that reads as no data.
    _, nowhere = await signed_in(http, agency, "analyst", limits={"stores": ["elsewhere"]})
    refused = await http.get("/v1/kpis", params=params, headers=nowhere.headers)
    assert refused.status_code == 403
    assert refused.json()["detail"] == f"no access to any store of tenant {seller.tenant_id}"
    # Nor the seller's settings: its catalog (GMV as it counts it) and its profile.
    tenant = {"tenant_id": seller.tenant_id}
    catalog = await http.get("/v1/kpis/catalog", params=tenant, headers=nowhere.headers)
    assert catalog.status_code == 403, catalog.text
    assert catalog.json()["detail"] == f"no access to any store of tenant {seller.tenant_id}"
    query = "query($t: ID) { kpiCatalog(tenantId: $t) { name } }"
    graphql = await http.post(
        "/graphql",
        json={"query": query, "variables": {"t": seller.tenant_id}},
        headers=nowhere.headers,
    )
    assert graphql.json()["errors"][0]["extensions"]["code"] == "FORBIDDEN", graphql.text
    profile = await http.get(
        TENANT_PROFILE_PATH.format(tenant_id=seller.tenant_id), headers=nowhere.headers
    )
    assert profile.status_code == 403, profile.text
