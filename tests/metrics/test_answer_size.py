"""An answer too large to build is refused, naming what makes it so."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from services.gateway.graphql import kpis as graphql_kpis
from services.metrics.kpis import service
from tests.conftest import NewTenant, TenantClient
from tests.e2e.test_push_to_graphql import KPIS
from tests.metrics.test_kpis import line
from tests.metrics.test_order_attached import push, settle

WEEK = {"from": "2026-04-06", "to": "2026-04-12"}


async def test_an_answer_of_more_rows_than_the_limit_is_refused(
    http: httpx.AsyncClient, new_tenant: NewTenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant = await new_tenant()
    # Four SKUs on two days: eight rows by day and SKU, four by SKU, two by day.
    await push(
        http,
        tenant,
        *(
            line(f"e{day}{sku}", f"O{day}{sku}", 1, "10.00", f"2026-04-0{day}T18:00:00Z", sku=sku)
            for day in (7, 8)
            for sku in "ABCD"
        ),
    )
    await settle(http, tenant, {"gmv": 80.0}, **WEEK)
    monkeypatch.setattr(service, "MAX_ANSWER_ROWS", 4)
    params: dict[str, Any] = {"metrics": "gmv,units", **WEEK}
    by_sku = await http.get(
        "/v1/kpis", params={**params, "grain": "total", "group_by": "sku"}, headers=tenant.headers
    )
    assert by_sku.status_code == 200 and len(by_sku.json()["rows"]) == 4
    refused = await http.get(
        "/v1/kpis", params={**params, "grain": "day", "group_by": "sku"}, headers=tenant.headers
    )
    assert refused.status_code == 422, refused.text
    assert refused.json()["error"] == "invalid_input"
    [error] = refused.json()["errors"]
    assert error["field"] == "group_by" and "more than 4 rows" in error["reason"]
    # Without groups, the periods make it large: the grain is named.
    monkeypatch.setattr(service, "MAX_ANSWER_ROWS", 1)
    by_day = await http.get("/v1/kpis", params={**params, "grain": "day"}, headers=tenant.headers)
    assert by_day.status_code == 422 and by_day.json()["errors"][0]["field"] == "grain"
    monkeypatch.setattr(service, "MAX_ANSWER_ROWS", 4)
    graphql = await http.post(
        "/graphql",
        json={
            "query": KPIS,
            "variables": {
                "input": {"metrics": ["gmv"], **WEEK, "grain": "DAY", "groupBy": ["SKU"]}
            },
        },
        headers=tenant.headers,
    )
    [graphql_error] = graphql.json()["errors"]
    assert graphql_error["extensions"]["code"] == "BAD_USER_INPUT"
    assert graphql_error["extensions"]["errors"][0]["field"] == "input.groupBy"


async def three_skus_sold(http: httpx.AsyncClient, new_tenant: NewTenant) -> TenantClient:
    """A tenant that sold SKUs A, B and C in WEEK, settled."""
    tenant = await new_tenant()
    await push(
        http,
        tenant,
        *(line(f"e{sku}", f"O{sku}", 1, "10.00", "2026-04-07T18:00:00Z", sku=sku) for sku in "ABC"),
    )
    await settle(http, tenant, {"gmv": 30.0}, **WEEK)
    return tenant


async def test_graphql_refuses_more_rows_than_a_dashboard_shows(
    http: httpx.AsyncClient, new_tenant: NewTenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant = await three_skus_sold(http, new_tenant)
    monkeypatch.setattr(graphql_kpis, "MAX_GRAPHQL_ROWS", 2)

    async def ask(**shape: Any) -> dict[str, Any]:
        query = {"query": KPIS, "variables": {"input": {"metrics": ["gmv"], **WEEK, **shape}}}
        response = await http.post("/graphql", json=query, headers=tenant.headers)
        body: dict[str, Any] = response.json()
        return body

    by_sku = await ask(grain="TOTAL", groupBy=["SKU"])
    [error] = by_sku["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert error["extensions"]["errors"][0]["field"] == "input.groupBy"
    assert "GET /v1/kpis" in error["extensions"]["errors"][0]["reason"]
    by_day = await ask(grain="DAY")
    assert by_day["errors"][0]["extensions"]["errors"][0]["field"] == "input.grain"
    assert len((await ask(grain="TOTAL"))["data"]["kpis"]["rows"]) == 1
    # REST answers the same question whole.
    rest = await http.get(
        "/v1/kpis",
        params={"metrics": "gmv", **WEEK, "grain": "total", "group_by": "sku"},
        headers=tenant.headers,
    )
    assert rest.status_code == 200 and len(rest.json()["rows"]) == 3


async def test_graphql_counts_the_values_of_all_kpis_fields_of_a_request(
    http: httpx.AsyncClient, new_tenant: NewTenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Aliases would multiply the row cap: the values (rows times metrics) of one
    request's kpis fields are counted together."""
    tenant = await three_skus_sold(http, new_tenant)
    monkeypatch.setattr(graphql_kpis, "MAX_GRAPHQL_VALUES", 4)
    by_sku = {"metrics": ["gmv"], **WEEK, "grain": "TOTAL", "groupBy": ["SKU"]}
    twice = """query($i: KpiQueryInput!) {
      a: kpis(input: $i) { rows { period } }
      b: kpis(input: $i) { rows { period } }
    }"""
    response = await http.post(
        "/graphql", json={"query": twice, "variables": {"i": by_sku}}, headers=tenant.headers
    )
    body = response.json()
    [error] = body["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert error["extensions"]["errors"][0]["field"] == "input.metrics"
    # kpis is never null, so the request answers no data (GraphQL's rule).
    assert body["data"] is None
    # Each alone passes.
    one = """query($i: KpiQueryInput!) { a: kpis(input: $i) { rows { period } } }"""
    single = await http.post(
        "/graphql", json={"query": one, "variables": {"i": by_sku}}, headers=tenant.headers
    )
    assert len(single.json()["data"]["a"]["rows"]) == 3
    # Aliases inside one field write its rows (or their values) out again: counted too,
    # through fragments as well.
    for selection in (
        "a: rows { period } b: rows { period }",
        "rows { a: values { value } b: values { value } }",
        "...Twice",
    ):
        aliased = f"""query($i: KpiQueryInput!) {{ kpis(input: $i) {{ {selection} }} }}
        fragment Twice on KpiResult {{ a: rows {{ period }} b: rows {{ period }} }}"""
        if "..." not in selection:
            aliased = aliased.split("fragment")[0]
        over = await http.post(
            "/graphql", json={"query": aliased, "variables": {"i": by_sku}}, headers=tenant.headers
        )
        assert over.json()["errors"][0]["extensions"]["errors"][0]["field"] == "input.metrics"
    # Selections GraphQL merges into one (one key, fragments of components), or skips,
    # write nothing twice: counted once, within the budget.
    for selection in (
        "rows { period } ...Values",
        "rows { values { metric } values { value } }",
        "a: rows { period } b: rows @skip(if: true) { period }",
        "rows { period } again: rows @include(if: false) { period }",
    ):
        merged = f"""query($i: KpiQueryInput!) {{ kpis(input: $i) {{ {selection} }} }}
        fragment Values on KpiResult {{ rows {{ values {{ value }} }} }}"""
        if "..." not in selection:
            merged = merged.split("fragment")[0]
        passed = await http.post(
            "/graphql", json={"query": merged, "variables": {"i": by_sku}}, headers=tenant.headers
        )
        assert "errors" not in passed.json(), (selection, passed.text)
        [written] = passed.json()["data"]["kpis"].values()
        assert len(written) == 3
    # One field of two metrics over the same rows is over the budget on its own.
    alone = {"query": KPIS, "variables": {"input": {**by_sku, "metrics": ["gmv", "units"]}}}
    refused = (await http.post("/graphql", json=alone, headers=tenant.headers)).json()
    assert refused["errors"][0]["extensions"]["errors"][0]["field"] == "input.metrics"


async def test_graphql_names_order_by_and_limit_as_its_input_writes_them(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant(scopes=["kpi:read"])
    base = {"metrics": ["gmv"], **WEEK, "grain": "TOTAL", "groupBy": ["SKU"]}
    for shape, field in (
        ({"limit": 0}, "input.limit"),
        ({"orderBy": {"metric": "units", "direction": "DESC"}}, "input.orderBy"),
    ):
        query = {"query": KPIS, "variables": {"input": {**base, **shape}}}
        body = (await http.post("/graphql", json=query, headers=tenant.headers)).json()
        assert body["errors"][0]["extensions"]["errors"][0]["field"] == field, body
