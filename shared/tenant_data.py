"""A tenant's rows in one service's schema: found, counted, exported and erased.

Tables are discovered from the catalog, so a table added by a later migration is
covered without a change here: every base table of the service's schema with a
``tenant_id`` column, plus the tables a service names as keyed otherwise (the
gateway's ``tenants`` by ``id``, its ``grants`` by either side). Columns that hold
secrets (hashes of secrets, private keys) never leave the database in an export.

Each service mounts :func:`tenant_data_router` under ``/internal/tenant-data``; the
gateway's export reads every service through it, and each service's erasure listener
(:mod:`shared.erasure`) calls :func:`erase_tenant`.
"""

from __future__ import annotations

import base64
import graphlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import asyncpg
import orjson
from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from shared.access import WholeTenantAdmin
from shared.audit import AUDIT_TABLE
from shared.db import TENANT_LOCK, Database, row_count
from shared.errors import NotFound
from shared.money import plain

TENANT_COLUMN = "tenant_id"
# Never exported, whatever table holds them.
SECRET_COLUMNS = frozenset(
    {"secret_hash", "password_hash", "private_jwk", "code_hash", "token_hash", "credentials"}
)
SKIPPED_TABLES = frozenset({"alembic_version"})
INTERNAL_PREFIX = "/internal/tenant-data"
NDJSON = "application/x-ndjson"
# Rows fetched per cursor round trip, and bytes gathered before a chunk is yielded.
PREFETCH_ROWS = 500
CHUNK_BYTES = 64 * 1024
_JSON_TYPES = frozenset({"json", "jsonb"})


@dataclass(frozen=True)
class TenantTables:
    """How a service's schema marks its tenants' rows, beyond a ``tenant_id`` column.

    ``keys``: tables whose rows belong to a tenant when any of these columns holds its
    id (they replace ``tenant_id`` for that table). ``kept``: the platform's record of
    an erasure, which an erasure leaves and an export leaves out. ``unexported``:
    tables erased but never exported (the exports themselves: an archive inside the
    next archive would double every export).
    """

    keys: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    kept: frozenset[str] = frozenset()
    unexported: frozenset[str] = frozenset()
    # Tables shared by two tenants (by ``keys``) with columns only one side's own:
    # table -> (the column naming that side, the columns exported to it alone).
    owners_only: Mapping[str, tuple[str, frozenset[str]]] = field(default_factory=dict)

    def exported(self, table: Table) -> bool:
        return table.name not in self.kept and table.name not in self.unexported


@dataclass(frozen=True)
class Table:
    """One table holding tenant rows: its key columns and the columns it exports."""

    schema: str
    name: str
    keys: tuple[str, ...]
    columns: tuple[str, ...]
    binary: frozenset[str]
    json: frozenset[str]
    # See ``TenantTables.owners_only``: None when every column goes to every side.
    owner: str | None = None
    owners_only: frozenset[str] = frozenset()

    @property
    def qualified(self) -> str:
        return f"{quote(self.schema)}.{quote(self.name)}"

    @property
    def where(self) -> str:
        """The condition a tenant's rows meet; ``$1`` is the tenant id."""
        return " OR ".join(f"{quote(k)} = $1" for k in self.keys)


def quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


async def discover(conn: asyncpg.Connection, schema: str, spec: TenantTables) -> list[Table]:
    """The schema's tables holding tenant rows, by name."""
    rows = await conn.fetch(
        """
        SELECT c.table_name, c.column_name, c.data_type, c.udt_name
        FROM information_schema.columns c
        JOIN information_schema.tables t
          ON t.table_schema = c.table_schema AND t.table_name = c.table_name
        WHERE c.table_schema = $1 AND t.table_type = 'BASE TABLE'
        ORDER BY c.table_name, c.ordinal_position
        """,
        schema,
    )
    columns: dict[str, list[tuple[str, str]]] = {}
    for row in rows:
        columns.setdefault(row["table_name"], []).append((row["column_name"], row["udt_name"]))
    tables = []
    for name, typed in sorted(columns.items()):
        names = [c for c, _ in typed]
        keys = tuple(spec.keys.get(name, (TENANT_COLUMN,) if TENANT_COLUMN in names else ()))
        if name in SKIPPED_TABLES or not keys:
            continue
        missing = [k for k in keys if k not in names]
        if missing:
            raise ValueError(f"{schema}.{name} has no column {missing[0]}")
        exported = [(c, t) for c, t in typed if c not in SECRET_COLUMNS]
        owner, owners_only = spec.owners_only.get(name, (None, frozenset()))
        tables.append(
            Table(
                schema=schema,
                name=name,
                keys=keys,
                columns=tuple(c for c, _ in exported),
                binary=frozenset(c for c, t in exported if t == "bytea"),
                json=frozenset(c for c, t in exported if t in _JSON_TYPES),
                owner=owner,
                owners_only=owners_only,
            )
        )
    return tables


async def table_named(
    conn: asyncpg.Connection, schema: str, spec: TenantTables, name: str
) -> Table:
    """The exported table ``name`` (404 for any other)."""
    for table in await discover(conn, schema, spec):
        if table.name == name and spec.exported(table):
            return table
    raise NotFound(f"no table {name} holds tenant data")


async def count_rows(
    conn: asyncpg.Connection, schema: str, spec: TenantTables, tenant_id: str
) -> list[tuple[str, int]]:
    """Every exported table with how many of its rows belong to ``tenant_id`` (0 too)."""
    tables = [t for t in await discover(conn, schema, spec) if spec.exported(t)]
    if not tables:
        return []
    query = " UNION ALL ".join(
        f"SELECT {i} AS i, count(*) AS n FROM {t.qualified} WHERE {t.where}"
        for i, t in enumerate(tables)
    )
    counts = {row["i"]: row["n"] for row in await conn.fetch(query, tenant_id)}
    return [(t.name, int(counts.get(i, 0))) for i, t in enumerate(tables)]


def _default(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, Decimal):
        # In digits, as the API writes amounts: PostgreSQL's 20000 arrives as 2E+4.
        return plain(value)
    # Decimal, interval, inet ...: their text form loses nothing.
    return str(value)


def ndjson_line(table: Table, record: Mapping[str, Any], tenant_id: str) -> bytes:
    """One row as a JSON object and a newline: bytea in base64, numerics as strings,
    json columns as JSON (not as a string holding JSON); the other side's own columns
    of a shared row null."""
    theirs = table.owner is not None and record[table.owner] != tenant_id
    row = {}
    for column in table.columns:
        value = None if theirs and column in table.owners_only else record[column]
        if column in table.json and isinstance(value, str):
            value = orjson.Fragment(value)
        row[column] = value
    return orjson.dumps(row, default=_default, option=orjson.OPT_APPEND_NEWLINE)


async def stream_rows(
    conn: asyncpg.Connection, table: Table, tenant_id: str
) -> AsyncIterator[bytes]:
    """The tenant's rows of ``table`` as NDJSON, in chunks of whole lines, read with a
    cursor in one transaction (one consistent snapshot, never the whole table in memory)."""
    columns = ", ".join(quote(c) for c in table.columns)
    query = f"SELECT {columns} FROM {table.qualified} WHERE {table.where}"
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        chunk: list[bytes] = []
        size = 0
        async for record in conn.cursor(query, tenant_id, prefetch=PREFETCH_ROWS):
            line = ndjson_line(table, record, tenant_id)
            chunk.append(line)
            size += len(line)
            if size >= CHUNK_BYTES:
                yield b"".join(chunk)
                chunk, size = [], 0
        if chunk:
            yield b"".join(chunk)


async def _deletion_order(
    conn: asyncpg.Connection, schema: str, tables: list[Table]
) -> list[Table]:
    """Children before parents, by the schema's foreign keys (a cycle raises)."""
    references = await conn.fetch(
        """
        SELECT child.relname AS child, parent.relname AS parent
        FROM pg_constraint c
        JOIN pg_class child ON child.oid = c.conrelid
        JOIN pg_class parent ON parent.oid = c.confrelid
        JOIN pg_namespace n ON n.oid = child.relnamespace
        WHERE c.contype = 'f' AND n.nspname = $1
        """,
        schema,
    )
    by_name = {t.name: t for t in tables}
    sorter: graphlib.TopologicalSorter[str] = graphlib.TopologicalSorter()
    for name in sorted(by_name):
        sorter.add(name)
    for ref in references:
        child, parent = ref["child"], ref["parent"]
        if child != parent and child in by_name and parent in by_name:
            # A parent's rows go after every child's that may point at them.
            sorter.add(parent, child)
    return [by_name[name] for name in sorter.static_order()]


# What an audit line of another tenant names in place of an erased one.
ERASED_TENANT = "(erased tenant)"


def erasure_turn(schema: str) -> str:
    """The key of the lock an erasure holds in ``schema`` before its tenant's: one at a
    time, since two partners' erasures delete their own rows and update the other's
    (audit entries naming them, archives holding their grants) in opposite orders, and
    deadlocked. Erasures are rare and take a fraction of a second."""
    return f"erasure/{schema}"


async def erase_tenant(
    conn: asyncpg.Connection, schema: str, spec: TenantTables, tenant_id: str
) -> dict[str, int]:
    """Deletes every row of ``tenant_id`` in the schema but the ``kept`` tables, in one
    transaction (a savepoint inside the caller's), children first, once the writes of
    the tenant in flight have ended (see ``hold_tenants``). Returns the rows deleted per
    table; erasing an erased tenant deletes nothing and succeeds."""
    deleted: dict[str, int] = {}
    async with conn.transaction():
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", erasure_turn(schema)
        )
        await conn.execute(
            f"SELECT pg_advisory_xact_lock({TENANT_LOCK}) FROM (SELECT $2::text AS t) AS one",
            schema,
            tenant_id,
        )
        tables = [t for t in await discover(conn, schema, spec) if t.name not in spec.kept]
        for table in await _deletion_order(conn, schema, tables):
            status = await conn.execute(
                f"DELETE FROM {table.qualified} WHERE {table.where}", tenant_id
            )
            deleted[table.name] = row_count(status)
        if any(table.name == AUDIT_TABLE for table in tables):
            # What an agency did in a seller's data stays in the seller's trail, but no
            # longer says who: the erased tenant, its clients and users go unnamed.
            await conn.execute(
                f'UPDATE "{schema}".{AUDIT_TABLE} SET actor = NULL, client_id = NULL, '
                "detail = jsonb_set(detail, '{acting_tenant}', 'null') "
                "WHERE detail->>'acting_tenant' = $1",
                tenant_id,
            )
            # Nor do other tenants' trails name it in what was asked for (an agency's
            # refused attempt on /v1/tenants/<id>, a seller's grant to it).
            await conn.execute(
                f'UPDATE "{schema}".{AUDIT_TABLE} SET target = replace(target, $1, $2) '
                "WHERE strpos(target, $1) > 0",
                tenant_id,
                ERASED_TENANT,
            )
            await conn.execute(
                f'UPDATE "{schema}".{AUDIT_TABLE} '
                "SET detail = jsonb_set(detail, '{asked_tenant}', to_jsonb($2::text)) "
                "WHERE detail->>'asked_tenant' = $1",
                tenant_id,
                ERASED_TENANT,
            )
        # Rows of other tenants that name what this one did in their data under a grant
        # (an idempotency key its agency client claimed): they would name its callers.
        for table in await conn.fetch(
            "SELECT table_name FROM information_schema.columns "
            "WHERE table_schema = $1 AND column_name = 'acting_tenant'",
            schema,
        ):
            status = await conn.execute(
                f'DELETE FROM "{schema}"."{table["table_name"]}" WHERE acting_tenant = $1',
                tenant_id,
            )
            deleted[table["table_name"]] = deleted.get(table["table_name"], 0) + row_count(status)
    return deleted


def tenant_data_router(spec: TenantTables | None = None) -> APIRouter:
    """``GET /internal/tenant-data`` (tables and row counts) and
    ``GET /internal/tenant-data/{table}`` (NDJSON) for the caller's own tenant.

    The caller needs ``tenant:admin`` of the tenant; it is never grantable, so an
    agency cannot read a seller's data this way. The app's ``state.db`` is read.
    """
    spec = spec or TenantTables()
    router = APIRouter(prefix=INTERNAL_PREFIX, include_in_schema=False)

    @router.get("")
    async def tables(request: Request, access: WholeTenantAdmin) -> dict[str, Any]:
        db: Database = request.app.state.db
        async with db.raw_connection() as conn:
            counted = await count_rows(conn, db.schema, spec, access.tenant_id)
        return {"tables": [{"name": name, "rows": rows} for name, rows in counted]}

    @router.get("/{table}")
    async def table_rows(
        table: str, request: Request, access: WholeTenantAdmin
    ) -> StreamingResponse:
        db: Database = request.app.state.db
        # Checked before the response starts, so an unknown table is a plain 404.
        async with db.raw_connection() as conn:
            found = await table_named(conn, db.schema, spec, table)

        async def body() -> AsyncIterator[bytes]:
            async with db.raw_connection() as conn:
                async for chunk in stream_rows(conn, found, access.tenant_id):
                    yield chunk

        return StreamingResponse(body(), media_type=NDJSON)

    return router
