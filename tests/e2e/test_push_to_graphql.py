"""The whole path as a client sees it: push through the gateway, read in GraphQL."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

from tests.conftest import NewTenant, TenantClient

KPIS = """
query Kpis($input: KpiQueryInput!, $tenantId: ID) {
  kpis(input: $input, tenantId: $tenantId) {
    currency
    rows { period dimensions { key value } values { metric value previous change } }
    warnings
  }
}
"""


def line(
    event_id: str,
    order_id: str,
    quantity: int,
    price: str,
    version: int = 1,
    status: str = "shipped",
    purchased_at: str = "2026-03-10T18:00:00Z",
    marketplace: str = "US",
) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "type": "order_line",
        "version": version,
        "source": {"platform": "amazon", "store_id": "acme-us", "marketplace": marketplace},
        "occurred_at": purchased_at,
        "payload": {
            "order_id": order_id,
            "line_id": event_id,
            "sku": "LAMP-01",
            "quantity": quantity,
            "unit_price": {"amount": price, "currency": "USD"},
            "status": status,
            "purchased_at": purchased_at,
        },
    }


async def push(http: httpx.AsyncClient, tenant: TenantClient, *events: dict[str, Any]) -> Any:
    response = await http.post("/v1/events", json={"events": list(events)}, headers=tenant.headers)
    assert response.status_code == 202, response.text
    return response.json()


async def kpis(
    http: httpx.AsyncClient, tenant: TenantClient, variables: dict[str, Any]
) -> dict[str, Any]:
    response = await http.post(
        "/graphql", json={"query": KPIS, "variables": variables}, headers=tenant.headers
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


TOTAL_MARCH = {
    "input": {
        "metrics": ["gmv", "orders"],
        "from": "2026-03-01",
        "to": "2026-03-31",
        "grain": "TOTAL",
    }
}


async def wait_for_values(
    http: httpx.AsyncClient, tenant: TenantClient, expected: dict[str, float]
) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        body = await kpis(http, tenant, TOTAL_MARCH)
        rows = body.get("data", {}) and body["data"]["kpis"]["rows"]
        if rows:
            values = {v["metric"]: v["value"] for v in rows[0]["values"]}
            if values == expected:
                return body
        await asyncio.sleep(0.2)
    raise AssertionError(f"never saw {expected}; last answer {body}")


async def test_pushed_order_shows_in_graphql_and_versions_replace(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant()
    first = line("e1", "o1", 2, "10.00")
    second = line("e2", "o2", 1, "5.50")
    assert await push(http, tenant, first, second) == {"accepted": 2, "duplicates": 0}
    body = await wait_for_values(http, tenant, {"gmv": 25.5, "orders": 2.0})
    assert body["data"]["kpis"]["currency"] == "USD"
    assert body["data"]["kpis"]["rows"][0]["period"] == "TOTAL"

    # The same event again changes nothing; a higher version replaces it.
    assert await push(http, tenant, first) == {"accepted": 0, "duplicates": 1}
    assert await push(http, tenant, line("e1", "o1", 3, "10.00", version=2)) == {
        "accepted": 1,
        "duplicates": 0,
    }
    await wait_for_values(http, tenant, {"gmv": 35.5, "orders": 2.0})
    # A lower version after that is a duplicate too.
    assert await push(http, tenant, line("e1", "o1", 9, "10.00", version=1)) == {
        "accepted": 0,
        "duplicates": 1,
    }
    # Cancelling the second order takes it out of gmv and orders.
    await push(http, tenant, line("e2", "o2", 1, "5.50", version=2, status="cancelled"))
    await wait_for_values(http, tenant, {"gmv": 30.0, "orders": 1.0})


async def test_day_grain_buckets_by_marketplace_local_date(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant()
    # 06:30 UTC on 1 April is 23:30 on 31 March in Los Angeles.
    await push(http, tenant, line("late", "o-late", 1, "7.00", purchased_at="2026-04-01T06:30:00Z"))
    await wait_for_values(http, tenant, {"gmv": 7.0, "orders": 1.0})
    body = await kpis(
        http,
        tenant,
        {
            "input": {
                "metrics": ["gmv"],
                "from": "2026-03-30",
                "to": "2026-04-01",
                "grain": "DAY",
                "groupBy": ["MARKETPLACE"],
            }
        },
    )
    rows = body["data"]["kpis"]["rows"]
    assert [(r["period"], r["dimensions"], r["values"][0]["value"]) for r in rows] == [
        ("2026-03-31", [{"key": "marketplace", "value": "US"}], 7.0)
    ]


async def test_one_tenant_never_sees_another(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    seller_a = await new_tenant()
    seller_b = await new_tenant()
    await push(http, seller_a, line("a1", "oa", 4, "25.00"))
    await wait_for_values(http, seller_a, {"gmv": 100.0, "orders": 1.0})
    body = await kpis(http, seller_b, TOTAL_MARCH)
    values = [v["value"] for r in body["data"]["kpis"]["rows"] for v in r["values"]]
    assert all(v in (None, 0, 0.0) for v in values)
    # Naming the other tenant is refused, not answered with empty data.
    body = await kpis(http, seller_b, {**TOTAL_MARCH, "tenantId": seller_a.tenant_id})
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert body.get("data") is None or body["data"] is None or body["data"].get("kpis") is None


async def test_graphql_without_token_is_unauthenticated(http: httpx.AsyncClient) -> None:
    response = await http.post("/graphql", json={"query": KPIS, "variables": TOTAL_MARCH})
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]
    errors = response.json()["errors"]
    assert errors[0]["extensions"]["code"] == "UNAUTHENTICATED"


async def test_filter_values_holding_commas_and_quotes_match_whole(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant()
    lamp = line("c1", "oc1", 1, "80.00")
    lamp["payload"]["category"] = "Lamps, Indoor"
    bulb = line("c2", "oc2", 1, "15.00")
    bulb["payload"].update(sku='BULB "2",X', category="Bulbs")
    uncategorised = line("c3", "oc3", 1, "5.00")
    await push(http, tenant, lamp, bulb, uncategorised)
    await wait_for_values(http, tenant, {"gmv": 100.0, "orders": 3.0})

    async def gmv(filters: dict[str, list[str]]) -> Any:
        body = await kpis(http, tenant, {"input": {**TOTAL_MARCH["input"], "filters": filters}})
        return body["data"]["kpis"]["rows"][0]["values"][0]["value"]

    assert await gmv({"categories": ["Lamps, Indoor"]}) == 80.0
    assert await gmv({"skus": ['BULB "2",X']}) == 15.0
    assert await gmv({"categories": ["Lamps, Indoor", "Bulbs"]}) == 95.0
    # The empty value is the group of lines without a category, as groupBy shows it.
    assert await gmv({"categories": [""]}) == 5.0
    assert await gmv({"categories": ["", "Bulbs"]}) == 20.0
    # REST writes such a value quoted, as in CSV.
    window = {"metrics": "gmv", "from": "2026-03-01", "to": "2026-03-31", "grain": "total"}
    quoted = await http.get(
        "/v1/kpis", params={**window, "categories": '"Lamps, Indoor"'}, headers=tenant.headers
    )
    assert quoted.json()["rows"][0]["values"][0]["value"] == 80.0
    empty = await http.get(
        "/v1/kpis", params={**window, "categories": '"",Bulbs'}, headers=tenant.headers
    )
    assert empty.json()["rows"][0]["values"][0]["value"] == 20.0
    unclosed = await http.get(
        "/v1/kpis", params={**window, "categories": '"Lamps, Indoor'}, headers=tenant.headers
    )
    assert unclosed.status_code == 422
    assert unclosed.json()["errors"][0]["field"] == "categories"


async def test_a_replayed_push_says_so_through_the_gateway(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant(["ingest:write"])
    body = {"events": [line("replayed-1", "o-replayed", 1, "9.99")]}
    headers = {**tenant.headers, "Idempotency-Key": "erp-batch-7"}
    first = await http.post("/v1/events", json=body, headers=headers)
    again = await http.post("/v1/events", json=body, headers=headers)
    assert (first.status_code, again.status_code) == (202, 202)
    assert again.json() == first.json() == {"accepted": 1, "duplicates": 0}
    assert "idempotent-replayed" not in first.headers
    assert again.headers["idempotent-replayed"] == "true"
    document = (await http.get("/openapi.json")).json()
    for path in ("/v1/events", "/v1/events:csv"):
        accepted = document["paths"][path]["post"]["responses"]["202"]
        assert "Idempotent-Replayed" in accepted["headers"], path


async def test_errors_from_metrics_are_worded_with_the_graphql_inputs_names(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant(scopes=["kpi:read"])
    asked = {**TOTAL_MARCH["input"], "orderBy": {"metric": "aov", "direction": "DESC"}}
    body = await kpis(http, tenant, {"input": {**asked, "groupBy": ["SKU"], "currency": "ZZZ"}})
    [error] = body["errors"]
    fields = [e["field"] for e in error["extensions"]["errors"]]
    assert fields == ["input.currency", "input.orderBy"], error
    assert "group_by" not in error["message"] and "order_by" not in error["message"]
    assert "input.orderBy: must be one of the metrics asked" in error["message"]
