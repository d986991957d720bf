"""Answers default to the tenant's reporting currency, set when the tenant was created."""

from __future__ import annotations

import httpx
import pytest
from starlette.requests import Request

from services.metrics.kpis.tenants import TenantCurrencies
from shared.errors import RateLimited, UpstreamUnavailable
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


async def test_a_currency_the_gateway_cannot_tell_now_fails_the_question() -> None:
    """Round 22C: a caller at its rate limit at the gateway got its KPIs in the period's
    dominant currency, with nothing to say so. Only a tenant the gateway does not know
    falls back to it; otherwise the question fails, and may be sent again."""
    answers = {
        "tn_known": httpx.Response(200, json={"reporting_currency": "MXN", "timezone": None}),
        "tn_gone": httpx.Response(404, json={"error": "not_found", "detail": "no tenant"}),
        "tn_busy": httpx.Response(429, headers={"Retry-After": "7"}, json={}),
        "tn_down": httpx.Response(502, json={}),
    }

    def gateway(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("tn_away/profile"):
            raise httpx.ConnectError("connection refused")
        return answers[request.url.path.split("/")[3]]

    client = httpx.AsyncClient(transport=httpx.MockTransport(gateway))
    currencies = TenantCurrencies("http://gateway", client)
    caller = Request({"type": "http", "headers": [(b"authorization", b"Bearer t")]})
    assert await currencies.reporting_currency(caller, "tn_known") == "MXN"
    assert await currencies.reporting_currency(caller, "tn_gone") is None
    with pytest.raises(RateLimited) as limited:
        await currencies.reporting_currency(caller, "tn_busy")
    assert limited.value.headers == {"Retry-After": "7"}
    for tenant in ("tn_down", "tn_away"):
        with pytest.raises(UpstreamUnavailable) as away:
            await currencies.reporting_currency(caller, tenant)
        assert away.value.status == 503 and away.value.headers == {"Retry-After": "1"}
    # Learnt once, the currency is kept: the gateway is not asked again.
    answers["tn_known"] = httpx.Response(502)
    assert await currencies.reporting_currency(caller, "tn_known") == "MXN"
    await client.aclose()
