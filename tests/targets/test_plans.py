"""Target plans as callers read them (there is no route to write one yet)."""

from __future__ import annotations

import asyncpg
import httpx

from tests.conftest import NewTenant
from tests.gateway.login import add_user, frontend_client, user_tokens


async def test_plans_read_in_digits_by_the_whole_tenant_only(
    http: httpx.AsyncClient, pg: asyncpg.Connection, new_tenant: NewTenant
) -> None:
    admin = await new_tenant()
    await pg.execute(
        "INSERT INTO targets.target_plans (tenant_id, id, name, year, metric, currency, amount, "
        "status, version, created_at) VALUES ($1, gen_random_uuid(), 'Company 2026', 2026, "
        "'gmv', 'USD', 5000000.00, 'approved', 1, now())",
        admin.tenant_id,
    )
    # A year's target in rupiah or dong passes 10^15, which no event amount may.
    await pg.execute(
        "INSERT INTO targets.target_plans (tenant_id, id, name, year, metric, currency, amount, "
        "status, version, created_at) VALUES ($1, gen_random_uuid(), 'Indonesia 2026', 2026, "
        "'gmv', 'IDR', 1E+16, 'approved', 1, now() - interval '1 day')",
        admin.tenant_id,
    )
    whole = await http.get("/v1/targets/plans", headers=admin.headers)
    assert whole.status_code == 200, whole.text
    amounts = {plan["name"]: plan["amount"] for plan in whole.json()["plans"]}
    assert amounts == {"Company 2026": "5000000.00", "Indonesia 2026": "10000000000000000"}
    # A plan sets the whole tenant's figures: a manager of one store reads none of it.
    client_id = await frontend_client(http, admin)
    user = await add_user(http, admin, "analyst", limits={"stores": ["s1"]})
    tokens = await user_tokens(http, client_id, user["email"], scope="targets:read")
    limited = await http.get(
        "/v1/targets/plans", headers={"Authorization": f"Bearer {tokens['access_token']}"}
    )
    assert limited.status_code == 403, limited.text
    assert limited.json()["detail"].startswith("this needs access to the whole tenant")
