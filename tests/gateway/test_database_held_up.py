"""The gateway's own routes while its database does not answer: a 503 to send again,
after a bounded wait, never a request left hanging or a 500 that reads as a fault."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import httpx

from shared.db import asyncpg_dsn
from tests.conftest import NewTenant, Stack
from tests.gateway.support import own_gateway

STATEMENT_TIMEOUT = 1.0


@asynccontextmanager
async def table_locked(stack: Stack, table: str) -> AsyncIterator[None]:
    """Holds ``table`` as a long migration or a VACUUM FULL would: every read of it waits."""
    conn = await asyncpg.connect(asyncpg_dsn(stack.config.database_url))
    try:
        async with conn.transaction():
            await conn.execute(f"LOCK TABLE gateway.{table} IN ACCESS EXCLUSIVE MODE")
            yield
    finally:
        await conn.close()


def assert_unavailable_for_now(answer: httpx.Response, started: float) -> None:
    assert answer.status_code == 503, answer.text
    assert answer.headers["retry-after"] == "1"
    assert answer.json()["error"] == "unavailable"
    # The statement's bound, not the client's 30 s nor a hang.
    assert time.monotonic() - started < 10 * STATEMENT_TIMEOUT


async def test_a_token_asked_while_the_database_holds_it_up_is_a_503_to_send_again(
    stack: Stack, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant()
    form = {
        "grant_type": "client_credentials",
        "client_id": tenant.client_id,
        "client_secret": tenant.client_secret,
    }
    async with own_gateway(stack, statement_timeout_seconds=STATEMENT_TIMEOUT) as gateway:
        async with table_locked(stack, "oauth_clients"):
            started = time.monotonic()
            held_up = await gateway.post("/oauth/token", data=form)
        assert_unavailable_for_now(held_up, started)
        # The connection that gave up went back to the pool fit for the next request.
        for _ in range(3):
            again = await gateway.post("/oauth/token", data=form)
            assert again.status_code == 200, again.text


async def test_an_agency_query_while_the_grants_are_held_up_says_when_to_ask_again(
    stack: Stack, http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    seller, agency = await new_tenant(), await new_tenant()
    granted = await http.post(
        "/v1/grants",
        json={"agency_tenant_id": agency.tenant_id, "stores": ["s1"], "scopes": ["kpi:read"]},
        headers=seller.headers,
    )
    assert granted.status_code == 201, granted.text
    query = {
        "query": 'query($t: ID) { kpis(tenantId: $t, input: {metrics: ["gmv"], '
        'from: "2026-01-01", to: "2026-01-31", grain: TOTAL}) { rows { period } } }',
        "variables": {"t": seller.tenant_id},
    }
    async with own_gateway(stack, statement_timeout_seconds=STATEMENT_TIMEOUT) as gateway:
        async with table_locked(stack, "grants"):
            started = time.monotonic()
            held_up = await gateway.post("/graphql", json=query, headers=agency.headers)
        assert time.monotonic() - started < 10 * STATEMENT_TIMEOUT
        (error,) = held_up.json()["errors"]
        assert error["extensions"] == {"code": "INTERNAL", "error": "unavailable", "retryAfter": 1}
        answered = await gateway.post("/graphql", json=query, headers=agency.headers)
        assert "errors" not in answered.json(), answered.text
