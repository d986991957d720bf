"""Answers default to the tenant's reporting currency, set when the tenant was created."""

from __future__ import annotations

import httpx

from tests.conftest import NewTenant
from tests.metrics.test_kpis import kpis, line
from tests.metrics.test_order_attached import push, settle
from tests.metrics.test_profit_and_ads import event

MARCH = {"from": "2026-03-01", "to": "2026-03-31"}


async def test_the_tenants_currency_is_the_default_and_a_setting_or_argument_wins(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant(reporting_currency="MXN")
    rate = {"date": "2026-03-01", "base": "USD", "quote": "MXN", "rate": "17.5"}
    await push(
        http,
        tenant,
        event("fx", "fx_rate", rate),
        line("m1", "O1", 1, "10.00", "2026-03-10T18:00:00Z"),
    )
    # The lines are all in USD, yet the tenant reports in MXN.
    await settle(http, tenant, {"gmv": 175.0}, **MARCH)
    body = await kpis(http, tenant, metrics="gmv", grain="total", **MARCH)
    assert body["currency"] == "MXN"
    asked = await kpis(http, tenant, metrics="gmv", grain="total", currency="USD", **MARCH)
    assert asked["currency"] == "USD" and asked["rows"][0]["values"][0]["value"] == 10.0
    setting = await http.put(
        "/v1/settings/kpi", json={"reporting_currency": "USD"}, headers=tenant.headers
    )
    assert setting.status_code == 200
    after = await kpis(http, tenant, metrics="gmv", grain="total", **MARCH)
    assert after["currency"] == "USD"
