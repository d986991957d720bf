"""The audit trail's writes against an erasure of their tenant, on a schema of its own."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI, Request

from shared.audit import AUDIT_TABLE, AuditMiddleware
from shared.db import Database
from shared.tenant_data import TenantTables, erase_tenant
from tests.conftest import FreshDatabase

SCHEMA = "auditwait"
DDL = f"""
CREATE SCHEMA {SCHEMA};
SET search_path TO {SCHEMA};
CREATE TABLE {AUDIT_TABLE} (
    id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT now(), tenant_id text,
    actor text, client_id text, service text, action text, target text, status int,
    ip text, user_agent text, trace_id text, detail jsonb
);
"""


@pytest.fixture
async def db(fresh_database: FreshDatabase) -> AsyncIterator[Database]:
    database = Database(await fresh_database(), SCHEMA, pool_size=3)
    async with database.raw_connection() as conn:
        await conn.execute(DDL)
    try:
        yield database
    finally:
        await database.dispose()


def audited_app(db: Database, erased: set[str]) -> FastAPI:
    app = FastAPI()
    app.state.db = db
    app.state.erased = erased

    @app.post("/v1/things/{tenant_id}", status_code=201)
    async def make(tenant_id: str, request: Request, agency: str | None = None) -> dict[str, str]:
        request.state.audit_tenant = tenant_id
        if agency is not None:
            # What an agency's write in a seller's data leaves (shared.audit).
            request.state.audit_actor = {"actor": "us_agent", "client_id": "cl_agency"}
            request.state.audit_detail = {"acting_tenant": agency}
        return {"made": tenant_id}

    app.add_middleware(AuditMiddleware, service="things")
    return app


async def entries(db: Database, tenant_id: str) -> int:
    async with db.raw_connection() as conn:
        count: int = await conn.fetchval(
            f"SELECT count(*) FROM {AUDIT_TABLE} WHERE tenant_id = $1", tenant_id
        )
    return count


async def test_an_entry_written_during_its_tenants_erasure_does_not_outlive_it(
    db: Database,
) -> None:
    """The entry is written after the answer: one that came while the erasure's delete
    ran (before the tenant counted as erased) survived it, a row of an erased tenant."""
    erased: set[str] = set()
    transport = httpx.ASGITransport(app=audited_app(db, erased))
    async with (
        httpx.AsyncClient(transport=transport, base_url="http://things") as client,
        db.raw_connection() as erasing,
    ):
        assert (await client.post("/v1/things/t1")).status_code == 201
        assert await entries(db, "t1") == 1
        erasure = erasing.transaction()
        await erasure.start()
        # The listener counts the tenant erased first, then deletes.
        await erase_tenant(erasing, SCHEMA, TenantTables(), "t1")
        answered = asyncio.create_task(client.post("/v1/things/t1"))
        other = await client.post("/v1/things/t2")
        assert other.status_code == 201  # another tenant's write is not held up
        await asyncio.sleep(0.3)
        assert not answered.done()
        erased.add("t1")
        await erasure.commit()
        assert (await asyncio.wait_for(answered, 10)).status_code == 201
        assert await entries(db, "t1") == 0
        assert await entries(db, "t2") == 1


async def test_an_agencys_entry_written_during_its_erasure_names_it_nowhere(
    db: Database,
) -> None:
    """The agency's erasure unnames it in the seller's trail: an entry of its write
    answered just before, written after, kept its client, user and tenant."""
    erased: set[str] = set()
    transport = httpx.ASGITransport(app=audited_app(db, erased))
    async with (
        httpx.AsyncClient(transport=transport, base_url="http://things") as client,
        db.raw_connection() as erasing,
    ):
        erasure = erasing.transaction()
        await erasure.start()
        await erase_tenant(erasing, SCHEMA, TenantTables(), "agency")
        answered = asyncio.create_task(
            client.post("/v1/things/seller", params={"agency": "agency"})
        )
        await asyncio.sleep(0.3)
        assert not answered.done()
        erased.add("agency")
        await erasure.commit()
        assert (await asyncio.wait_for(answered, 10)).status_code == 201
        async with db.raw_connection() as conn:
            row = await conn.fetchrow(
                f"SELECT actor, client_id, detail FROM {AUDIT_TABLE} WHERE tenant_id = 'seller'"
            )
        assert row is not None
        assert (row["actor"], row["client_id"]) == (None, None)
        assert "agency" not in str(row["detail"])
