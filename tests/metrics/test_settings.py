"""Tenant metric settings (口径): what GMV includes, the reporting currency."""

from __future__ import annotations

import asyncio

import httpx

from shared.http import DATA_VERSION_HEADER
from tests.conftest import NewTenant, Stack
from tests.metrics.test_kpis import kpis, line, seed, values


async def test_settings_change_every_answer_after_them_history_included(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant()
    await seed(
        http,
        tenant,
        [
            line(
                "g1",
                "G1",
                2,
                "10.00",
                "2025-06-10T18:00:00Z",
                shipping="3.00",
                tax="1.60",
                discount="1.00",
            )
        ],
    )
    window = {"from": "2025-06-01", "to": "2025-06-30"}
    before = await kpis(http, tenant, metrics="gmv", grain="total", **window)
    assert values(before) == [("TOTAL", [], {"gmv": 22.0})]
    # An ERP polls the catalog: unchanged, it is 304 with the tag it holds.
    first = await http.get("/v1/kpis/catalog", headers=tenant.headers)
    tag = first.headers["etag"]
    again = await http.get("/v1/kpis/catalog", headers={**tenant.headers, "If-None-Match": tag})
    assert again.status_code == 304 and again.headers["etag"] == tag
    assert (await http.get("/v1/settings/kpi", headers=tenant.headers)).json() == {
        "gmv_includes_tax": False,
        "gmv_includes_shipping": True,
        "refunds_by": "refunded_at",
        "reporting_currency": None,
        "updated_at": None,
    }
    changed = await http.put(
        "/v1/settings/kpi",
        json={
            "gmv_includes_tax": True,
            "gmv_includes_shipping": False,
            "reporting_currency": "USD",
        },
        headers=tenant.headers,
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["gmv_includes_tax"] is True
    after = await kpis(http, tenant, metrics="gmv", grain="total", **window)
    # 2 x 10 - 1 discount + 1.60 tax, without the 3.00 shipping.
    assert values(after) == [("TOTAL", [], {"gmv": 20.6})]
    # The settings changed: so did the catalog's definitions, and its tag.
    changed_catalog = await http.get(
        "/v1/kpis/catalog", headers={**tenant.headers, "If-None-Match": tag}
    )
    assert changed_catalog.status_code == 200 and changed_catalog.headers["etag"] != tag
    catalog = changed_catalog.json()["kpis"]
    gmv = next(k for k in catalog if k["id"] == "gmv")
    assert "tax included" in gmv["description"] and "shipping excluded" in gmv["description"]


async def test_settings_need_tenant_admin_and_valid_fields(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    reader = await new_tenant(scopes=["kpi:read"])
    refused = await http.put(
        "/v1/settings/kpi", json={"gmv_includes_tax": True}, headers=reader.headers
    )
    assert refused.status_code == 403
    assert "tenant:admin" in refused.json()["detail"]
    admin = await new_tenant(scopes=["tenant:admin"])
    bad = await http.put(
        "/v1/settings/kpi",
        json={"reporting_currency": "dollars", "gmv_with_vat": True},
        headers=admin.headers,
    )
    assert bad.status_code == 422
    assert {e["field"] for e in bad.json()["errors"]} == {"reporting_currency", "gmv_with_vat"}
    loose = await http.put(
        "/v1/settings/kpi",
        json={"gmv_includes_tax": "yes", "gmv_includes_shipping": 0},
        headers=admin.headers,
    )
    assert loose.status_code == 422
    fields = {e["field"] for e in loose.json()["errors"]}
    assert fields == {"gmv_includes_tax", "gmv_includes_shipping"}


async def test_what_get_answered_can_be_put_back_changed(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    admin = await new_tenant(scopes=["tenant:admin"])
    current = (await http.get("/v1/settings/kpi", headers=admin.headers)).json()
    assert "updated_at" in current
    changed = await http.put(
        "/v1/settings/kpi",
        json={**current, "gmv_includes_tax": True, "updated_at": "2020-01-01T00:00:00Z"},
        headers=admin.headers,
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["gmv_includes_tax"] is True
    # The server keeps the time of the change, whatever the body said.
    assert not changed.json()["updated_at"].startswith("2020")
    # But what it says is a timestamp as GET writes it: seconds, a bare date or one
    # without its offset were taken, though the refusal of "x" named that rule.
    for guess in (5, "1700000000", "2026-01-01", "2026-01-01T00:00:00"):
        refused = await http.put(
            "/v1/settings/kpi", json={**current, "updated_at": guess}, headers=admin.headers
        )
        assert refused.status_code == 422, (guess, refused.text)
        assert [e["field"] for e in refused.json()["errors"]] == ["updated_at"], guess
    # A setting left out takes its default: PUT replaces.
    replaced = await http.put(
        "/v1/settings/kpi", json={"gmv_includes_shipping": False}, headers=admin.headers
    )
    assert replaced.json()["gmv_includes_tax"] is False
    assert replaced.json()["gmv_includes_shipping"] is False


async def test_two_admins_editing_at_once_do_not_undo_each_other(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    """PUT replaces the whole set: with If-Match, the second of two admins who read the
    same settings is told they changed (412), instead of silently putting back the
    first one's change."""
    admin = await new_tenant(scopes=["tenant:admin"])
    read = await http.get("/v1/settings/kpi", headers=admin.headers)
    tag = read.headers["etag"]
    unchanged = await http.get("/v1/settings/kpi", headers={**admin.headers, "If-None-Match": tag})
    assert unchanged.status_code == 304 and unchanged.headers["etag"] == tag
    first = await http.put(
        "/v1/settings/kpi",
        json={**read.json(), "gmv_includes_tax": True},
        headers={**admin.headers, "If-Match": tag},
    )
    assert first.status_code == 200, first.text
    assert first.headers["etag"] != tag
    second = await http.put(
        "/v1/settings/kpi",
        json={**read.json(), "refunds_by": "purchase_date"},
        headers={**admin.headers, "If-Match": tag},
    )
    assert second.status_code == 412, second.text
    assert second.json()["errors"] == [
        {"field": "header.If-Match", "reason": "names settings changed since; GET them again"}
    ]
    kept = (await http.get("/v1/settings/kpi", headers=admin.headers)).json()
    assert (kept["gmv_includes_tax"], kept["refunds_by"]) == (True, "refunded_at")
    again = await http.put(
        "/v1/settings/kpi",
        json={**kept, "refunds_by": "purchase_date"},
        headers={**admin.headers, "If-Match": first.headers["etag"]},
    )
    assert again.status_code == 200 and again.json()["gmv_includes_tax"] is True
    # "*" holds whatever is stored; without If-Match, a PUT replaces as before.
    anything = await http.put(
        "/v1/settings/kpi", json={}, headers={**admin.headers, "If-Match": "*"}
    )
    assert anything.status_code == 200
    # If-None-Match on a PUT means "only if not as I name it": a tenant always has
    # settings, so "*" is refused, as is the tag of what is stored; another tag is not.
    for held in ("*", anything.headers["etag"], f"W/{anything.headers['etag']}"):
        refused = await http.put(
            "/v1/settings/kpi", json={}, headers={**admin.headers, "If-None-Match": held}
        )
        assert refused.status_code == 412, (held, refused.text)
        assert refused.json()["errors"] == [
            {
                "field": "header.If-None-Match",
                "reason": "names the settings as they are (a tenant always has settings, "
                "so * always does)",
            }
        ]
    other = await http.put(
        "/v1/settings/kpi",
        json={"gmv_includes_shipping": False},
        headers={**admin.headers, "If-None-Match": tag},
    )
    assert other.status_code == 200 and other.json()["gmv_includes_shipping"] is False
    # If-Match is evaluated first: a stale one is named, not If-None-Match.
    both = await http.put(
        "/v1/settings/kpi",
        json={},
        headers={**admin.headers, "If-Match": tag, "If-None-Match": "*"},
    )
    assert both.status_code == 412 and both.json()["errors"][0]["field"] == "header.If-Match"


async def test_the_first_edit_of_two_admins_at_once_is_refused_to_the_second(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    """Before a tenant has stored settings there is no row to lock: the PUTs still
    queue, and the second's If-Match is held against the first's change."""
    for _ in range(5):
        admin = await new_tenant(scopes=["tenant:admin"])
        read = await http.get("/v1/settings/kpi", headers=admin.headers)
        tagged = {**admin.headers, "If-Match": read.headers["etag"]}
        answers = await asyncio.gather(
            http.put("/v1/settings/kpi", json={"gmv_includes_tax": True}, headers=tagged),
            http.put("/v1/settings/kpi", json={"refunds_by": "purchase_date"}, headers=tagged),
        )
        assert sorted(a.status_code for a in answers) == [200, 412], [a.text for a in answers]


async def test_a_settings_change_is_a_new_version_of_the_tenants_answers(
    http: httpx.AsyncClient, stack: Stack, new_tenant: NewTenant
) -> None:
    """The gateway runs a GraphQL request again when its fields saw two versions (as
    metrics tells it on its own port): one answer never shows two definitions of GMV."""
    tenant = await new_tenant()
    params = {"metrics": "gmv", "from": "2026-03-01", "to": "2026-03-31", "grain": "total"}

    async def version() -> str:
        async with httpx.AsyncClient(base_url=stack.url("metrics")) as metrics:
            answer = await metrics.get("/v1/kpis", params=params, headers=tenant.headers)
        assert answer.status_code == 200, answer.text
        return answer.headers[DATA_VERSION_HEADER]

    before = await version()
    changed = await http.put(
        "/v1/settings/kpi", json={"gmv_includes_tax": True}, headers=tenant.headers
    )
    assert changed.status_code == 200, changed.text
    assert await version() != before
