"""shared.tenant_data on a schema of its own: discovery, counts, NDJSON, erasure order."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from decimal import Decimal

import orjson
import pytest

from shared.db import Database, hold_tenants
from shared.errors import NotFound
from shared.tenant_data import (
    Table,
    TenantTables,
    count_rows,
    discover,
    erase_tenant,
    ndjson_line,
    stream_rows,
    table_named,
)
from tests.conftest import FreshDatabase

SCHEMA = "tenantdata"
SPEC = TenantTables(
    keys={"accounts": ("id",), "links": ("seller_id", "agency_id")},
    kept=frozenset({"proofs"}),
    unexported=frozenset({"scratches"}),
)
# Named so that deleting in alphabetical order would break the foreign keys.
DDL = """
CREATE SCHEMA tenantdata;
SET search_path TO tenantdata;
CREATE TABLE accounts (id text PRIMARY KEY, name text, secret_hash text, password_hash text);
CREATE TABLE a_parents (id text PRIMARY KEY, tenant_id text NOT NULL REFERENCES accounts (id));
CREATE TABLE z_children (
    id text PRIMARY KEY,
    tenant_id text NOT NULL,
    parent_id text NOT NULL REFERENCES a_parents (id)
);
CREATE TABLE links (
    id text PRIMARY KEY,
    seller_id text NOT NULL REFERENCES accounts (id),
    agency_id text NOT NULL REFERENCES accounts (id)
);
CREATE TABLE blobs (
    tenant_id text NOT NULL,
    n integer NOT NULL,
    payload bytea,
    amount numeric,
    doc jsonb,
    at timestamptz,
    uid uuid,
    tags text[],
    token_hash text,
    PRIMARY KEY (tenant_id, n)
);
CREATE TABLE proofs (id text PRIMARY KEY, tenant_id text NOT NULL);
CREATE TABLE scratches (id text PRIMARY KEY, tenant_id text NOT NULL);
CREATE TABLE rates (day date PRIMARY KEY, rate numeric);
CREATE TABLE alembic_version (version_num text PRIMARY KEY, tenant_id text);
CREATE VIEW blob_view AS SELECT tenant_id, n FROM blobs;
"""
SEED = """
SET search_path TO tenantdata;
INSERT INTO accounts VALUES ('t1', 'one', 'sha256$s$h', 'argon'), ('t2', 'two', NULL, NULL);
INSERT INTO a_parents VALUES ('p1', 't1'), ('p2', 't2');
INSERT INTO z_children VALUES ('c1', 't1', 'p1'), ('c2', 't1', 'p1'), ('c3', 't2', 'p2');
INSERT INTO links VALUES ('l1', 't1', 't2'), ('l2', 't2', 't1'), ('l3', 't2', 't2');
INSERT INTO blobs VALUES
  ('t1', 1, '\\x00ff10'::bytea, 12.3400, '{"a": [1, 2]}', '2026-03-10T18:00:00Z',
   '6f1c1b4e-8a0b-4d7a-9a53-3d1f5e0c2b11', '{x,y}', 'secret'),
  ('t2', 1, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
INSERT INTO proofs VALUES ('e1', 't1');
INSERT INTO scratches VALUES ('s1', 't1');
INSERT INTO rates VALUES ('2026-03-01', 1.5);
INSERT INTO alembic_version VALUES ('0001', 't1');
"""


@pytest.fixture
async def db(fresh_database: FreshDatabase) -> AsyncIterator[Database]:
    database = Database(await fresh_database(), SCHEMA, pool_size=2)
    async with database.raw_connection() as conn:
        await conn.execute(DDL)
        await conn.execute(SEED)
    try:
        yield database
    finally:
        await database.dispose()


async def lines_of(db: Database, table: str, tenant_id: str) -> list[dict[str, object]]:
    async with db.raw_connection() as conn:
        found = await table_named(conn, SCHEMA, SPEC, table)
        body = b"".join([chunk async for chunk in stream_rows(conn, found, tenant_id)])
    return [orjson.loads(line) for line in body.splitlines()]


async def test_discovery_takes_base_tables_keyed_by_tenant_and_skips_the_rest(
    db: Database,
) -> None:
    async with db.raw_connection() as conn:
        tables = {t.name: t for t in await discover(conn, SCHEMA, SPEC)}
    # No view, no table without a tenant key, never alembic_version.
    assert sorted(tables) == [
        "a_parents",
        "accounts",
        "blobs",
        "links",
        "proofs",
        "scratches",
        "z_children",
    ]
    assert tables["accounts"].keys == ("id",)
    assert tables["links"].keys == ("seller_id", "agency_id")
    assert tables["blobs"].keys == ("tenant_id",)
    assert "secret_hash" not in tables["accounts"].columns
    assert "password_hash" not in tables["accounts"].columns
    assert "token_hash" not in tables["blobs"].columns


async def test_exported_rows_are_counted_for_one_tenant_on_either_key(db: Database) -> None:
    async with db.raw_connection() as conn:
        counted = dict(await count_rows(conn, SCHEMA, SPEC, "t1"))
    # Neither the kept proof nor the unexported scratch table is offered.
    assert counted == {"a_parents": 1, "accounts": 1, "blobs": 1, "links": 2, "z_children": 2}


async def test_rows_stream_as_ndjson_with_exact_values_and_no_secrets(db: Database) -> None:
    (row,) = await lines_of(db, "blobs", "t1")
    assert row == {
        "tenant_id": "t1",
        "n": 1,
        "payload": base64.b64encode(b"\x00\xff\x10").decode(),
        "amount": "12.3400",
        "doc": {"a": [1, 2]},
        "at": "2026-03-10T18:00:00+00:00",
        "uid": "6f1c1b4e-8a0b-4d7a-9a53-3d1f5e0c2b11",
        "tags": ["x", "y"],
    }
    assert await lines_of(db, "accounts", "t1") == [{"id": "t1", "name": "one"}]
    assert sorted(str(r["id"]) for r in await lines_of(db, "links", "t1")) == ["l1", "l2"]
    assert "scratch" not in str(await lines_of(db, "blobs", "t1"))
    # Another tenant's rows never come along.
    assert [r["id"] for r in await lines_of(db, "z_children", "t2")] == ["c3"]
    assert await lines_of(db, "blobs", "nobody") == []


def test_numerics_are_written_in_digits_never_an_exponent() -> None:
    """PostgreSQL's numeric 20000 arrives as Decimal("2E+4"): written as the API writes it."""
    table = Table("s", "t", ("tenant_id",), ("tenant_id", "amount"), frozenset(), frozenset())
    for stored, written in (("2E+4", "20000"), ("1.00E+6", "1000000"), ("1E-7", "0.0000001")):
        line = ndjson_line(table, {"tenant_id": "t1", "amount": Decimal(stored)}, "t1")
        assert orjson.loads(line)["amount"] == written


async def test_a_large_table_streams_in_several_chunks_of_whole_lines(db: Database) -> None:
    async with db.raw_connection() as conn:
        await conn.execute(
            "INSERT INTO tenantdata.blobs (tenant_id, n, doc) "
            "SELECT 't3', g, jsonb_build_object('pad', repeat('x', 100)) "
            "FROM generate_series(1, 3000) g"
        )
        found = await table_named(conn, SCHEMA, SPEC, "blobs")
        chunks = [chunk async for chunk in stream_rows(conn, found, "t3")]
    assert len(chunks) > 1
    assert all(chunk.endswith(b"\n") for chunk in chunks)
    numbers = [orjson.loads(line)["n"] for chunk in chunks for line in chunk.splitlines()]
    assert sorted(numbers) == list(range(1, 3001))


async def test_erasure_deletes_children_first_keeps_the_proof_and_spares_others(
    db: Database,
) -> None:
    async with db.raw_connection() as conn:
        deleted = await erase_tenant(conn, SCHEMA, SPEC, "t1")
        # t2's child row points at t2's parent; l1 and l2 involve t1 on one side.
        assert deleted == {
            "a_parents": 1,
            "accounts": 1,
            "blobs": 1,
            "links": 2,
            "scratches": 1,
            "z_children": 2,
        }
        assert set(dict(await count_rows(conn, SCHEMA, SPEC, "t1")).values()) == {0}
        assert await conn.fetchval("SELECT count(*) FROM tenantdata.proofs") == 1
        assert await conn.fetchval("SELECT count(*) FROM tenantdata.scratches") == 0
        assert dict(await count_rows(conn, SCHEMA, SPEC, "t2")) == {
            "a_parents": 1,
            "accounts": 1,
            "blobs": 1,
            "links": 1,
            "z_children": 1,
        }
        assert await conn.fetchval("SELECT count(*) FROM tenantdata.rates") == 1
        # Twice is harmless.
        again = await erase_tenant(conn, SCHEMA, SPEC, "t1")
    assert set(again.values()) == {0}


async def test_erasure_inside_a_failed_transaction_changes_nothing(db: Database) -> None:
    async with db.raw_connection() as conn:
        with pytest.raises(RuntimeError):
            async with conn.transaction():
                await erase_tenant(conn, SCHEMA, SPEC, "t1")
                raise RuntimeError("the caller's unit of work fails")
        assert dict(await count_rows(conn, SCHEMA, SPEC, "t1"))["z_children"] == 2


async def test_unknown_table_and_missing_key_column_are_refused(db: Database) -> None:
    async with db.raw_connection() as conn:
        with pytest.raises(NotFound):
            await table_named(conn, SCHEMA, SPEC, "rates")
        for hidden in ("alembic_version", "proofs", "scratches"):
            with pytest.raises(NotFound):
                await table_named(conn, SCHEMA, SPEC, hidden)
        wrong = TenantTables(keys={"rates": ("tenant_id",)})
        with pytest.raises(ValueError, match="rates has no column tenant_id"):
            await discover(conn, SCHEMA, wrong)


async def test_an_erasure_waits_for_the_tenants_writes_in_flight(db: Database) -> None:
    """A write of the tenant open when its erasure begins (metrics applying a batch that
    was on its way): the erasure's DELETE could not see its rows, which stayed once it
    committed. Now the erasure waits for it and deletes them; a write of another tenant
    does not hold it up."""
    async with db.raw_connection() as writing, db.raw_connection() as erasing:
        write = writing.transaction()
        await write.start()
        await hold_tenants(writing, SCHEMA, ["t1", "t2"])
        await writing.execute("INSERT INTO scratches VALUES ('s-late', 't1')")
        erasure = asyncio.create_task(erase_tenant(erasing, SCHEMA, SPEC, "t1"))
        await asyncio.sleep(0.3)
        assert not erasure.done()
        await write.commit()
        deleted = await asyncio.wait_for(erasure, 10)
        assert deleted["scratches"] == 2
        assert await erasing.fetchval("SELECT count(*) FROM scratches WHERE tenant_id = 't1'") == 0
        # Shared among writers: another write of t1 runs beside this one.
        async with writing.transaction(), erasing.transaction():
            await hold_tenants(writing, SCHEMA, ["t1"])
            await asyncio.wait_for(hold_tenants(erasing, SCHEMA, ["t1"]), 2)
