"""GraphQL: the contract's types, its error codes, and the abuse limits."""

from __future__ import annotations

import httpx

from tests.conftest import NewTenant


async def gql(
    http: httpx.AsyncClient, headers: dict[str, str], query: str, **variables: object
) -> dict:
    response = await http.post(
        "/graphql", json={"query": query, "variables": variables}, headers=headers
    )
    assert response.status_code == 200, response.text
    body: dict = response.json()
    return body


async def test_schema_has_the_contract_types(http: httpx.AsyncClient) -> None:
    response = await http.post(
        "/graphql",
        json={
            "query": """{
              input: __type(name: "KpiQueryInput") { inputFields { name type { name kind ofType { name } } } }
              grain: __type(name: "Grain") { enumValues { name } }
              dimension: __type(name: "Dimension") { enumValues { name } }
              comparison: __type(name: "Comparison") { enumValues { name } }
              date: __type(name: "Date") { kind }
              query: __type(name: "Query") { fields { name args { name type { name kind ofType { name } } } } }
            }"""
        },
    )
    data = response.json()["data"]
    fields = {f["name"]: f["type"] for f in data["input"]["inputFields"]}
    assert list(fields) == [
        "metrics", "from", "to", "grain", "groupBy", "filters", "currency", "compareTo"
    ]  # fmt: skip
    assert fields["from"]["ofType"]["name"] == "Date"
    assert [v["name"] for v in data["grain"]["enumValues"]] == [
        "DAY", "WEEK", "MONTH", "QUARTER", "YEAR", "TOTAL"
    ]  # fmt: skip
    assert [v["name"] for v in data["dimension"]["enumValues"]] == [
        "PLATFORM", "STORE", "MARKETPLACE", "SKU", "CATEGORY"
    ]  # fmt: skip
    assert {v["name"] for v in data["comparison"]["enumValues"]} == {
        "PREVIOUS_PERIOD",
        "PREVIOUS_YEAR",
    }
    assert data["date"]["kind"] == "SCALAR"
    kpis = next(f for f in data["query"]["fields"] if f["name"] == "kpis")
    assert {a["name"]: a["type"].get("name") for a in kpis["args"]}["tenantId"] == "ID"
    assert "kpiCatalog" in {f["name"] for f in data["query"]["fields"]}


async def test_catalog_lists_every_contract_kpi(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant(scopes=["kpi:read"])
    body = await gql(http, tenant.headers, "{ kpiCatalog { id name unit direction description } }")
    ids = {k["id"] for k in body["data"]["kpiCatalog"]}
    assert {"gmv", "orders", "acos", "days_of_cover", "csat", "order_defect_rate"} <= ids
    gmv = next(k for k in body["data"]["kpiCatalog"] if k["id"] == "gmv")
    assert (
        gmv["unit"] == "money" and gmv["direction"] == "up" and "tax excluded" in gmv["description"]
    )


async def test_bad_input_is_bad_user_input_naming_the_argument(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant(scopes=["kpi:read"])
    query = "query($i: KpiQueryInput!) { kpis(input: $i) { currency } }"
    body = await gql(
        http,
        tenant.headers,
        query,
        i={"metrics": ["gmv", "bogus"], "from": "2026-03-01", "to": "2026-01-01", "grain": "DAY"},
    )
    error = body["errors"][0]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    fields = {e["field"] for e in error["extensions"]["errors"]}
    assert {"metrics", "from"} <= fields
    wrong_enum = await gql(
        http,
        tenant.headers,
        query,
        i={"metrics": ["gmv"], "from": "2026-01-01", "to": "2026-01-02", "grain": "HOUR"},
    )
    assert wrong_enum["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_missing_scope_is_forbidden(http: httpx.AsyncClient, new_tenant: NewTenant) -> None:
    tenant = await new_tenant(scopes=["ingest:write"])
    body = await gql(http, tenant.headers, "{ kpiCatalog { id } }")
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert "kpi:read" in body["errors"][0]["message"]


async def test_abusive_queries_are_refused(http: httpx.AsyncClient, new_tenant: NewTenant) -> None:
    tenant = await new_tenant(scopes=["kpi:read"])
    aliases = " ".join(f"a{i}: kpiCatalog {{ id }}" for i in range(40))
    body = await gql(http, tenant.headers, f"{{ {aliases} }}")
    assert body["errors"] and body.get("data") is None
    deep = "{ __schema { types { fields { type { fields { type { fields { type { fields { name } } } } } } } } } }"
    body = await gql(http, tenant.headers, deep)
    assert body["errors"] and "depth" in body["errors"][0]["message"].lower()
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_graphiql_is_served_on_get(http: httpx.AsyncClient) -> None:
    response = await http.get("/graphql", headers={"Accept": "text/html"})
    assert response.status_code == 200
    assert "graphiql" in response.text.lower()
