from __future__ import annotations

from typing import Any

import asyncpg

_OUT = "id, platform, store_id, marketplace, name, granted_scopes, status, created_at, updated_at"


class ConnectionRepository:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def add(self, row: dict[str, Any]) -> asyncpg.Record | None:
        """The new connection, or None when the tenant already connected that store."""
        return await self.conn.fetchrow(
            f"""
            INSERT INTO connections
                (id, tenant_id, platform, store_id, marketplace, name, granted_scopes,
                 credentials, created_by)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
            ON CONFLICT (tenant_id, platform, store_id) DO NOTHING
            RETURNING {_OUT}
            """,
            row["id"],
            row["tenant_id"],
            row["platform"],
            row["store_id"],
            row["marketplace"],
            row["name"],
            row["granted_scopes"],
            row["credentials"],
            row["created_by"],
        )

    async def of_tenant(self, tenant_id: str) -> list[asyncpg.Record]:
        rows: list[asyncpg.Record] = await self.conn.fetch(
            f"SELECT {_OUT} FROM connections WHERE tenant_id = $1 ORDER BY platform, store_id",
            tenant_id,
        )
        return rows

    async def get(self, tenant_id: str, connection_id: str) -> asyncpg.Record | None:
        return await self.conn.fetchrow(
            f"SELECT {_OUT} FROM connections WHERE tenant_id = $1 AND id = $2",
            tenant_id,
            connection_id,
        )

    async def update(
        self, tenant_id: str, connection_id: str, changes: dict[str, Any]
    ) -> asyncpg.Record | None:
        columns = sorted(changes)
        assignments = ", ".join(f"{c} = ${i}" for i, c in enumerate(columns, start=3))
        return await self.conn.fetchrow(
            f"UPDATE connections SET {assignments}, updated_at = now() "
            f"WHERE tenant_id = $1 AND id = $2 RETURNING {_OUT}",
            tenant_id,
            connection_id,
            *(changes[c] for c in columns),
        )

    async def delete(self, tenant_id: str, connection_id: str) -> bool:
        status = await self.conn.execute(
            "DELETE FROM connections WHERE tenant_id = $1 AND id = $2", tenant_id, connection_id
        )
        return status.endswith(" 1")
