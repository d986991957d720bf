"""Tenant data exports: one zip of everything a tenant has in every service.

``POST /v1/exports`` records a running export; :class:`ExportRunner` builds the
archive in a background task of this process, in a temporary file, and stores it in
``export_parts``. A running
export's heartbeat is touched every few seconds; one whose heartbeat stopped was left
by a process that died (or is being stopped) and is marked failed, at start-up and
whenever the tenant's exports are read. Heartbeats rather than "every running export
at start-up", because another gateway replica may be building one right now.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import tempfile
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import IO

import httpx
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession

from services.gateway.config import Settings
from services.gateway.erasures.repository import ErasureRepository
from services.gateway.exports.models import Export
from services.gateway.exports.repository import ExportRepository
from services.gateway.exports.schemas import ExportOut, Progress
from services.gateway.exports.sources import (
    NEW_EXPORT,
    ArchiveWriter,
    ExportFailed,
    LocalSource,
    RemoteSource,
    ServiceAway,
    TableSource,
)
from services.gateway.oauth.internal import internal_token
from services.gateway.oauth.signing import Signer
from services.gateway.proxy.service import service_urls
from services.gateway.tenants.data import GATEWAY_TABLES
from shared.db import Database
from shared.errors import Conflict, NotFound
from shared.scopes import TENANT_ADMIN
from shared.tasks import stop_task
from shared.time import utcnow

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 10.0
# How long an export waits, each time, for a service that was away, before it builds
# its archive again; after the last, it fails.
AWAY_PAUSES_SECONDS = (1.0, 3.0, 6.0)
STALE_AFTER = timedelta(seconds=60)
LIST_LIMIT = 100
# The archive is stored and downloaded in parts of this size.
DOWNLOAD_CHUNK_BYTES = 1024 * 1024
# Built in memory up to this size, on disk beyond it.
SPOOL_BYTES = 16 * 1024 * 1024


# Archives kept per tenant, the newest; an older one is deleted when a new one starts.
KEPT_EXPORTS = 5
DISCARDED = (
    f"its archive was deleted: a tenant keeps those of its {KEPT_EXPORTS} newest exports; "
    "request a new export"
)


def download_path(export_id: str) -> str:
    return f"/v1/exports/{export_id}/archive"


def out(export: Export) -> ExportOut:
    ready = export.status == "ready"
    return ExportOut(
        id=export.id,
        tenant_id=export.tenant_id,
        status=export.status,
        progress=Progress(tables_done=export.tables_done, tables_total=export.tables_total),
        download_url=download_path(export.id) if ready else None,
        bytes=export.size_bytes if ready else None,
        sha256=export.archive_sha256 if ready else None,
        error=export.error,
        created_at=export.created_at,
        finished_at=export.finished_at,
    )


async def create_export(session: AsyncSession, tenant_id: str, requested_by: str) -> Export:
    """A new running export of ``tenant_id``; the caller starts its runner after the
    commit. A tenant builds one export at a time: asked again meanwhile, 409 names the
    one running, which began before and may not hold what the caller wrote since. It
    keeps the archives of its ``KEPT_EXPORTS`` newest: each is a whole copy of its data
    in the gateway's database."""
    repository = ExportRepository(session)
    await repository.hold_tenant(tenant_id)
    await ErasureRepository(session).hold_unerased(tenant_id)
    await fail_stale(session, tenant_id)
    running = await repository.running(tenant_id)
    if running is not None:
        raise Conflict(
            f"export {running.id} of this tenant is running, begun at "
            f"{running.created_at.isoformat()}: it may not hold what was written since; "
            "ask for a new export once it has finished",
            headers={"Location": f"/v1/exports/{running.id}"},
        )
    await repository.discard_all_but_newest(tenant_id, KEPT_EXPORTS - 1, LIST_LIMIT - 1, DISCARDED)
    now = utcnow()
    export = Export(
        id=f"ex_{secrets.token_hex(8)}",
        tenant_id=tenant_id,
        requested_by=requested_by,
        status="running",
        created_at=now,
        heartbeat_at=now,
    )
    return await repository.add(export)


async def fail_stale(session: AsyncSession, tenant_id: str | None = None) -> int:
    now = utcnow()
    return await ExportRepository(session).fail_stale(now - STALE_AFTER, now, tenant_id)


async def list_exports(session: AsyncSession, tenant_id: str) -> list[Export]:
    await fail_stale(session, tenant_id)
    return await ExportRepository(session).list_for(tenant_id, LIST_LIMIT)


async def readable_export(session: AsyncSession, tenant_id: str, export_id: str) -> Export:
    """The tenant's export; another tenant's, or none, is 404 so ids cannot be probed."""
    await fail_stale(session, tenant_id)
    export = await ExportRepository(session).get(tenant_id, export_id)
    if export is None:
        raise NotFound(f"no export {export_id}")
    return export


async def downloadable_export(session: AsyncSession, tenant_id: str, export_id: str) -> Export:
    export = await readable_export(session, tenant_id, export_id)
    if export.status == "running":
        raise Conflict(f"export {export_id} is still running; poll it until it is ready")
    if export.status != "ready":
        # Each stored error says what went wrong and to request a new export.
        raise Conflict(f"export {export_id} cannot be downloaded: {export.error}")
    return export


async def archive_chunks(db: Database, export_id: str) -> AsyncIterator[bytes]:
    """The stored zip, a part per query, so a download never holds it all in memory."""
    part = 0
    while True:
        async with db.session() as session:
            chunk = await ExportRepository(session).archive_part(export_id, part)
        if chunk is None:
            return
        yield chunk
        part += 1


class ExportRunner:
    """Builds exports in background tasks of this process; ``stop()`` cancels them."""

    def __init__(
        self, db: Database, settings: Settings, signer: Signer, client: httpx.AsyncClient
    ) -> None:
        self.db = db
        self.settings = settings
        self.signer = signer
        self.client = client
        self._tasks: dict[str, tuple[str, asyncio.Task[None]]] = {}

    async def fail_abandoned(self) -> int:
        """At start-up: exports whose builder died are failed (see the module doc)."""
        async with self.db.session() as session:
            failed = await fail_stale(session)
        if failed:
            log.warning("abandoned exports marked failed", extra={"fields": {"count": failed}})
        return failed

    async def start(self, export: Export) -> None:
        """Starts building ``export`` (async so it can run as a request's background task,
        after the commit that made the row visible)."""
        task = asyncio.create_task(self._run(export), name=f"export-{export.id}")
        self._tasks[export.id] = (export.tenant_id, task)
        task.add_done_callback(lambda _: self._tasks.pop(export.id, None))

    def cancel_tenant(self, tenant_id: str) -> None:
        """Stops this process's exports of an erased tenant: their rows are gone."""
        for owner, task in list(self._tasks.values()):
            if owner == tenant_id:
                task.cancel()

    async def stop(self) -> None:
        tasks = [task for _, task in self._tasks.values()]
        await asyncio.gather(*(stop_task(task) for task in tasks))

    def sources(self, tenant_id: str) -> list[TableSource]:
        def token() -> str:
            return internal_token(self.signer, self.settings, tenant_id, [TENANT_ADMIN])

        sources: list[TableSource] = [LocalSource("gateway", self.db, GATEWAY_TABLES, tenant_id)]
        for service, url in service_urls(self.settings).items():
            sources.append(RemoteSource(service, url, self.client, token))
        return sources

    async def _run(self, export: Export) -> None:
        heartbeat = asyncio.create_task(self._heartbeat(export.id))
        try:
            with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as archive:
                await self._build_while_services_come_back(export, archive)
                size = archive.tell()
                archive.seek(0)
                async with self.db.session() as session:
                    stored = await ExportRepository(session).finish(
                        export.id, export.tenant_id, archive, DOWNLOAD_CHUNK_BYTES, utcnow()
                    )
            if stored:
                log.info("export ready", extra={"fields": {"export_id": export.id, "bytes": size}})
        except asyncio.CancelledError:
            await self._fail(export.id, "the export was stopped")
            raise
        except (ExportFailed, httpx.HTTPError) as exc:
            await self._fail(export.id, str(exc).removesuffix(NEW_EXPORT) or type(exc).__name__)
        except Exception as exc:
            # A fault of ours: logged whole, and the export says it failed instead of
            # staying "running" until its heartbeat goes stale.
            log.exception("export failed", extra={"fields": {"export_id": export.id}})
            await self._fail(export.id, f"internal error ({type(exc).__name__})")
        finally:
            await stop_task(heartbeat)

    async def _build_while_services_come_back(self, export: Export, archive: IO[bytes]) -> None:
        """The archive, built again from the start when a service was away for a moment
        (restarting, say), as a client asks again after a 503."""
        for pause in (*AWAY_PAUSES_SECONDS, None):
            try:
                await self._build(export, archive)
                return
            except ServiceAway as away:
                if pause is None:
                    raise
                log.warning("export %s waits for a service: %s", export.id, away)
                await asyncio.sleep(pause)
                archive.seek(0)
                archive.truncate()

    async def _build(self, export: Export, archive: IO[bytes]) -> None:
        listed = [(source, await source.tables()) for source in self.sources(export.tenant_id)]
        total = sum(len(tables) for _, tables in listed)
        await self._progress(export.id, 0, total)
        writer = ArchiveWriter(archive)
        done = 0
        try:
            for source, tables in listed:
                for table, _ in tables:
                    await writer.add_table(source, table)
                    done += 1
                    await self._progress(export.id, done, total)
        except BaseException:
            writer.abandon()
            raise
        writer.close(export.tenant_id, export.id, export.created_at)

    async def _progress(self, export_id: str, done: int, total: int) -> None:
        async with self.db.session() as session:
            await ExportRepository(session).progress(export_id, done, total, utcnow())

    async def _heartbeat(self, export_id: str) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_SECONDS)
            async with self.db.session() as session:
                await ExportRepository(session).heartbeat(export_id, utcnow())

    async def _fail(self, export_id: str, error: str) -> None:
        log.warning("export failed: %s", error, extra={"fields": {"export_id": export_id}})
        error += NEW_EXPORT
        # Best effort: when the database is gone too, the stale heartbeat tells later.
        with contextlib.suppress(OSError, SQLAlchemyError):
            async with self.db.session() as session:
                await ExportRepository(session).fail(export_id, error, utcnow())
