"""An answer too large to build is refused, naming what makes it so."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from services.metrics.kpis import service
from tests.conftest import NewTenant
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
