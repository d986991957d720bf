"""Cached answers: served while the tenant's data and settings are unchanged, never after."""

from __future__ import annotations

import httpx

from services.metrics.kpis.cache import ANSWERS, AnswerCache
from tests.conftest import NewTenant
from tests.metrics.test_kpis import kpis, line
from tests.metrics.test_order_attached import push, settle

MARCH = {"from": "2026-03-01", "to": "2026-03-31"}


async def test_answers_are_reused_until_data_or_settings_change(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant()
    await push(http, tenant, line("c1", "O1", 1, "10.00", "2026-03-10T18:00:00Z", tax="1.00"))
    await settle(http, tenant, {"gmv": 10.0}, **MARCH)
    hits = ANSWERS.hits
    first = await kpis(http, tenant, metrics="gmv", grain="total", **MARCH)
    again = await kpis(http, tenant, metrics="gmv", grain="total", **MARCH)
    assert again == first and ANSWERS.hits >= hits + 1
    # New data: the next answer shows it, not the cached one.
    await push(http, tenant, line("c2", "O2", 1, "5.00", "2026-03-11T18:00:00Z"))
    await settle(http, tenant, {"gmv": 15.0}, **MARCH)
    # A settings change applies to the very next answer.
    changed = await http.put(
        "/v1/settings/kpi", json={"gmv_includes_tax": True}, headers=tenant.headers
    )
    assert changed.status_code == 200
    body = await kpis(http, tenant, metrics="gmv", grain="total", **MARCH)
    assert body["rows"][0]["values"][0]["value"] == 16.0


def test_the_cache_keeps_the_most_recently_used_answers() -> None:
    cache = AnswerCache(capacity=2)
    cache.put("a", {"n": 1})
    cache.put("b", {"n": 2})
    assert cache.get("a") == {"n": 1}
    cache.put("c", {"n": 3})
    assert cache.get("b") is None and cache.get("a") == {"n": 1} and cache.get("c") == {"n": 3}
