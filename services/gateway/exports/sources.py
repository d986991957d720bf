"""Where an export reads each service's tables, and the zip it writes them into.

The gateway's own tables are read from its schema; the other services' through their
``/internal/tenant-data`` routes with a short-lived token acting for the tenant. Each
table is one consistent snapshot; the archive as a whole is not one instant across
services (no such instant exists between four schemas written independently).
"""

from __future__ import annotations

import contextlib
import hashlib
import zipfile
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import IO, Any, Protocol
from urllib.parse import quote

import httpx
import orjson

from shared.db import Database
from shared.tenant_data import (
    INTERNAL_PREFIX,
    TenantTables,
    count_rows,
    stream_rows,
    table_named,
)

# What every failed export's error ends with: the remedy.
NEW_EXPORT = "; request a new export"


class ExportFailed(Exception):
    """A service could not hand over its data; the export is marked failed with this."""


class ServiceAway(ExportFailed):
    """A service did not answer, or answered that it is away for now (503): the export
    may be built again in a moment."""

    def __init__(self, service: str) -> None:
        super().__init__(f"the {service} service was unavailable{NEW_EXPORT}")


class TableSource(Protocol):
    service: str

    async def tables(self) -> list[tuple[str, int]]: ...

    def lines(self, table: str) -> AsyncIterator[bytes]: ...


class LocalSource:
    """The gateway's own schema, read directly."""

    def __init__(self, service: str, db: Database, spec: TenantTables, tenant_id: str) -> None:
        self.service = service
        self.db = db
        self.spec = spec
        self.tenant_id = tenant_id

    async def tables(self) -> list[tuple[str, int]]:
        async with self.db.raw_connection() as conn:
            return await count_rows(conn, self.db.schema, self.spec, self.tenant_id)

    async def lines(self, table: str) -> AsyncIterator[bytes]:
        async with self.db.raw_connection() as conn:
            found = await table_named(conn, self.db.schema, self.spec, table)
            async for chunk in stream_rows(conn, found, self.tenant_id):
                yield chunk


class RemoteSource:
    """Another service, over its internal tenant-data routes."""

    def __init__(
        self, service: str, base_url: str, client: httpx.AsyncClient, token: Callable[[], str]
    ) -> None:
        self.service = service
        self.url = base_url.rstrip("/") + INTERNAL_PREFIX
        self.client = client
        # Called for every request: a long export outlives any one short-lived token.
        self.token = token

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token()}"}

    async def tables(self) -> list[tuple[str, int]]:
        try:
            response = await self.client.get(self.url, headers=self._headers())
        except httpx.HTTPError:
            raise ServiceAway(self.service) from None
        if response.status_code == 503:
            raise ServiceAway(self.service)
        if response.status_code != 200:
            raise ExportFailed(
                f"{self.service} answered {response.status_code} listing tables: "
                + response.text[:200]
            )
        body: dict[str, Any] = response.json()
        return [(str(t["name"]), int(t["rows"])) for t in body["tables"]]

    async def lines(self, table: str) -> AsyncIterator[bytes]:
        url = f"{self.url}/{quote(table, safe='')}"
        try:
            async with self.client.stream("GET", url, headers=self._headers()) as response:
                if response.status_code == 503:
                    raise ServiceAway(self.service)
                if response.status_code != 200:
                    raise ExportFailed(
                        f"{self.service} answered {response.status_code} for {table}"
                    )
                async for chunk in response.aiter_bytes():
                    yield chunk
        except httpx.HTTPError:
            raise ServiceAway(self.service) from None


@dataclass(frozen=True)
class ArchiveFile:
    path: str
    service: str
    table: str
    rows: int
    bytes: int
    sha256: str


class ArchiveWriter:
    """A zip written into ``target`` (a temporary file: an archive can be larger than
    memory): ``<service>/<table>.ndjson`` per table, then ``manifest.json`` listing each
    file with its rows, size and SHA-256."""

    def __init__(self, target: IO[bytes]) -> None:
        self._zip = zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED)
        self.files: list[ArchiveFile] = []

    async def add_table(self, source: TableSource, table: str) -> ArchiveFile:
        path = f"{source.service}/{table}.ndjson"
        digest = hashlib.sha256()
        size = rows = 0
        with self._zip.open(path, "w", force_zip64=True) as entry:
            async for chunk in source.lines(table):
                entry.write(chunk)
                digest.update(chunk)
                size += len(chunk)
                rows += chunk.count(b"\n")
        added = ArchiveFile(path, source.service, table, rows, size, digest.hexdigest())
        self.files.append(added)
        return added

    def close(self, tenant_id: str, export_id: str, created_at: datetime) -> None:
        manifest = {
            "tenant_id": tenant_id,
            "export_id": export_id,
            "created_at": created_at,
            "format": "one JSON object per line; bytea as base64, numerics as strings",
            "files": [asdict(f) for f in self.files],
        }
        self._zip.writestr("manifest.json", orjson.dumps(manifest, option=orjson.OPT_INDENT_2))
        self._zip.close()

    def abandon(self) -> None:
        """Ends an archive that will not be kept while its file is still open: left to
        the garbage collector, the zip would write its end into a closed file."""
        with contextlib.suppress(ValueError, OSError):
            self._zip.close()
