"""An answer too large to build is refused, naming what makes it so."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from services.gateway.graphql import kpis as graphql_kpis
from services.metrics.kpis import service
from shared.http import MOST_ROWS_HEADER, TOO_MANY_ROWS
from tests.conftest import NewTenant, Stack, TenantClient
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
    http: httpx.AsyncClient, stack: Stack, new_tenant: NewTenant, monkeypatch: pytest.MonkeyPatch
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
    # The gateway tells metrics how many rows it takes, and metrics refuses a larger
    # answer as it grows rather than building it whole; top N keeps fewer than it reads.
    question = {"metrics": "gmv", **WEEK, "grain": "total", "group_by": "sku"}
    bounded = {**tenant.headers, MOST_ROWS_HEADER: "2"}
    refused = await http.get(f"{stack.url('metrics')}/v1/kpis", params=question, headers=bounded)
    assert refused.status_code == 422, refused.text
    assert refused.json()["detail"].startswith(f"{TOO_MANY_ROWS} 2 rows")
    top = {**question, "order_by": "gmv", "limit": "2"}
    ranked = await http.get(f"{stack.url('metrics')}/v1/kpis", params=top, headers=bounded)
    assert ranked.status_code == 200 and len(ranked.json()["rows"]) == 2
    # REST answers the same question whole.
    rest = await http.get("/v1/kpis", params=question, headers=tenant.headers)
    assert rest.status_code == 200 and len(rest.json()["rows"]) == 3


async def test_graphql_counts_what_all_kpis_fields_of_a_request_write_out(
    http: httpx.AsyncClient, new_tenant: NewTenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Aliases would multiply the row cap: every scalar the kpis fields of one request
    write out (each row's period, dimensions and metric values, each alias apart) is
    counted together. Three SKUs' rows of one metric, with period and value, are six."""
    tenant = await three_skus_sold(http, new_tenant)
    monkeypatch.setattr(graphql_kpis, "MAX_GRAPHQL_CELLS", 7)
    by_sku = {"metrics": ["gmv"], **WEEK, "grain": "TOTAL", "groupBy": ["SKU"]}
    row = "rows { period values { value } }"

    async def ask(query: str) -> dict[str, Any]:
        response = await http.post(
            "/graphql", json={"query": query, "variables": {"i": by_sku}}, headers=tenant.headers
        )
        body: dict[str, Any] = response.json()
        return body

    def inside(selection: str, fragment: str = "") -> str:
        return f"query($i: KpiQueryInput!) {{ kpis(input: $i) {{ {selection} }} }} {fragment}"

    twice = await ask(
        f"query($i: KpiQueryInput!) {{ a: kpis(input: $i) {{ {row} }} b: kpis(input: $i) {{ {row} }} }}"
    )
    [error] = twice["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert error["extensions"]["errors"][0]["field"] == "input.metrics"
    # kpis is never null, so the request answers no data (GraphQL's rule).
    assert twice["data"] is None
    assert len((await ask(inside(row)))["data"]["kpis"]["rows"]) == 3
    # Aliases inside one field write rows, dimensions or values out again: counted too,
    # through fragments as well.
    for selection, fragment in (
        (f"a: {row} b: {row}", ""),
        ("rows { period a: values { value } b: values { value } }", ""),
        ("rows { period values { a: value b: value c: value } }", ""),
        (
            "rows { period d0: dimensions { value } d1: dimensions { value } d2: dimensions { value } }",
            "",
        ),
        ("...Twice", f"fragment Twice on KpiResult {{ a: {row} b: {row} }}"),
    ):
        over = await ask(inside(selection, fragment))
        assert over["errors"][0]["extensions"]["errors"][0]["field"] == "input.metrics", selection
    # Selections GraphQL merges into one (one key, fragments of components), or skips,
    # write nothing twice: counted once, within the budget.
    for selection, fragment in (
        ("rows { period } ...Values", "fragment Values on KpiResult { rows { values { value } } }"),
        ("rows { values { metric } values { value } }", ""),
        ("a: rows { period } b: rows @skip(if: true) { period }", ""),
        ("rows { period } again: rows @include(if: false) { period }", ""),
        # Apollo Client adds __typename everywhere: a type's name is no value.
        ("__typename rows { __typename period values { __typename value } }", ""),
    ):
        passed = await ask(inside(selection, fragment))
        assert "errors" not in passed, (selection, passed)
        [written] = [v for k, v in passed["data"]["kpis"].items() if k != "__typename"]
        assert len(written) == 3
    # So is kpis itself, selected twice under one key, or beside a fragment selecting it.
    for query in (
        "query($i: KpiQueryInput!) { kpis(input: $i) { currency } kpis(input: $i) { %s } }",
        "query($i: KpiQueryInput!) { kpis(input: $i) { currency } ...K } "
        "fragment K on Query { kpis(input: $i) { %s } }",
        "query($i: KpiQueryInput!) { k: kpis(input: $i) { %s } k: kpis(input: $i) { %s } }",
    ):
        merged = await ask(query.replace("%s", row))
        assert "errors" not in merged, (query, merged)
        [answer] = merged["data"].values()
        assert len(answer["rows"]) == 3
    # One field of two metrics over the same rows is over the budget on its own.
    alone = {"query": KPIS, "variables": {"input": {**by_sku, "metrics": ["gmv", "units"]}}}
    refused = (await http.post("/graphql", json=alone, headers=tenant.headers)).json()
    assert refused["errors"][0]["extensions"]["errors"][0]["field"] == "input.metrics"
    # Every metric asked counts, written out or not: metrics computes each of them.
    asked = {**by_sku, "metrics": ["gmv", "units", "orders"]}
    response = await http.post(
        "/graphql",
        json={"query": inside("rows { period }"), "variables": {"i": asked}},
        headers=tenant.headers,
    )
    [over] = response.json()["errors"]
    assert over["extensions"]["errors"][0]["field"] == "input.metrics", over


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
