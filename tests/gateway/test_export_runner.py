"""The export runner, the erasure tracker and a service's erasure listener, driven
directly for the paths a client cannot bring about: a service that fails during an
export, a gateway stopped or dead mid-export, lost erasure messages, bad messages."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import secrets
import time
import zipfile
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import asyncpg
import httpx
import orjson
import pytest
from joserfc.jwk import RSAKey
from pydantic import BaseModel

from devstack.stack import service_settings
from services.gateway.erasures import service as erasures
from services.gateway.erasures.repository import ErasureRepository
from services.gateway.erasures.schemas import ErasureOut
from services.gateway.erasures.tracker import ErasureTracker
from services.gateway.exports import service as exports
from services.gateway.exports.service import ExportRunner, create_export
from services.gateway.oauth.signing import Signer
from shared.db import Database
from shared.erasure import ERASURE_DONE_TOPIC, ErasureDone, ErasureListener, Publisher
from shared.settings import ServiceSettings
from shared.time import utcnow
from tests.conftest import Stack


class RecordingPublisher(Publisher):
    """Keeps what would have been published."""

    def __init__(self, settings: ServiceSettings) -> None:
        super().__init__(settings)
        self.sent: list[tuple[str, str, dict[str, Any]]] = []

    async def send(self, topic: str, key: str, message: BaseModel) -> None:
        self.sent.append((topic, key, message.model_dump()))


def records(*values: bytes | BaseModel) -> Any:
    """Consumer records as the handlers read them: a value, an offset and headers."""
    return [
        SimpleNamespace(
            value=v.model_dump_json().encode() if isinstance(v, BaseModel) else v,
            offset=i,
            headers=(),
        )
        for i, v in enumerate(values)
    ]


@pytest.fixture
async def gateway_db(stack: Stack) -> AsyncIterator[Database]:
    db = Database(stack.config.database_url, "gateway", pool_size=2)
    try:
        yield db
    finally:
        await db.dispose()


@pytest.fixture(scope="module")
def signer() -> Signer:
    return Signer([RSAKey.generate_key(2048, parameters={"kid": "runner-test"})], [utcnow()])


def claims_of(token: str) -> dict[str, Any]:
    body = token.split(".")[1]
    parsed: dict[str, Any] = orjson.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    return parsed


async def export_row(pg: asyncpg.Connection, export_id: str, leave: str = "") -> Any:
    """The export's row once its status is no longer ``leave``."""
    deadline = time.monotonic() + 15
    while True:
        row = await pg.fetchrow("SELECT * FROM gateway.exports WHERE id = $1", export_id)
        if row["status"] != leave or time.monotonic() > deadline:
            return row
        await asyncio.sleep(0.05)


async def a_tenant(pg: asyncpg.Connection) -> str:
    """A tenant of the gateway's own (an export is of a tenant that is there)."""
    tenant = f"tn_{secrets.token_hex(6)}"
    await pg.execute(
        "INSERT INTO gateway.tenants (id, name, reporting_currency, created_at) "
        "VALUES ($1, 'exported', 'USD', now())",
        tenant,
    )
    return tenant


async def test_an_export_fails_and_names_the_service_that_could_not_answer(
    stack: Stack,
    gateway_db: Database,
    pg: asyncpg.Connection,
    signer: Signer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = service_settings("gateway", stack.config)
    monkeypatch.setattr(exports, "AWAY_PAUSES_SECONDS", (0.01, 0.01))
    seen: list[httpx.Request] = []

    async def export_with(answers: dict[str, list[httpx.Response]]) -> tuple[str, Any]:
        """An export whose services answer ``answers`` in turn (the last one again),
        and 200 with no tables where none is given."""

        def answer(request: httpx.Request) -> httpx.Response:
            seen.append(request)
            for service, queue in answers.items():
                if request.url.port == stack.config.ports[service]:
                    return queue.pop(0) if len(queue) > 1 else queue[0]
            return httpx.Response(200, json={"tables": []})

        tenant = await a_tenant(pg)
        async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as client:
            runner = ExportRunner(gateway_db, settings, signer, client)
            async with gateway_db.session() as session:
                export = await create_export(session, tenant, "test")
            await runner.start(export)
            return tenant, await export_row(pg, export.id, leave="running")

    away = httpx.Response(503, json={"error": "unavailable", "detail": "restarting"})
    # A service away for now is waited for; after the last wait the export names it.
    _, row = await export_with({"metrics": [away]})
    assert row["status"] == "failed" and row["finished_at"] is not None
    assert row["error"] == "the metrics service was unavailable; request a new export"
    metrics = [r for r in seen if r.url.port == stack.config.ports["metrics"]]
    assert len(metrics) == 3
    assert (
        await pg.fetchval(
            "SELECT count(*) FROM gateway.export_parts WHERE export_id = $1", row["id"]
        )
        == 0
    )
    # Each call carries a token of its own for the tenant, tenant:admin, for 60 s.
    claims = claims_of(metrics[0].headers["authorization"].removeprefix("Bearer "))
    assert claims["scope"] == "tenant:admin" and claims["exp"] - claims["iat"] == 60
    assert claims["iss"] == settings.effective_issuer and claims["aud"] == settings.audience
    # Back within the waits: the archive is built again, whole.
    _, row = await export_with({"metrics": [away, httpx.Response(200, json={"tables": []})]})
    assert row["status"] == "ready", row["error"]
    # A fault is told at once, naming the service and what it answered.
    seen.clear()
    fault = httpx.Response(500, json={"error": "internal", "detail": "internal error"})
    tenant, row = await export_with({"targets": [fault]})
    assert row["status"] == "failed"
    assert row["error"].startswith("targets answered 500 listing tables")
    assert sum(r.url.port == stack.config.ports["targets"] for r in seen) == 1
    claims = claims_of(seen[0].headers["authorization"].removeprefix("Bearer "))
    assert claims["tenant"] == tenant


async def test_an_archive_larger_than_a_part_is_stored_and_downloaded_in_parts(
    stack: Stack,
    gateway_db: Database,
    pg: asyncpg.Connection,
    signer: Signer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(exports, "DOWNLOAD_CHUNK_BYTES", 4096)
    # Random bytes do not compress: the archive is about as large as the table.
    lines = b"".join(
        orjson.dumps({"n": n, "noise": secrets.token_hex(64)}) + b"\n" for n in range(300)
    )

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.port != stack.config.ports["metrics"]:
            return httpx.Response(200, json={"tables": []})
        if request.url.path.endswith("/tenant-data"):
            return httpx.Response(200, json={"tables": [{"name": "noise", "rows": 300}]})
        return httpx.Response(200, content=lines)

    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as client:
        runner = ExportRunner(gateway_db, service_settings("gateway", stack.config), signer, client)
        tenant = await a_tenant(pg)
        async with gateway_db.session() as session:
            export = await create_export(session, tenant, "test")
        await runner.start(export)
        row = await export_row(pg, export.id, leave="running")
    assert row["status"] == "ready", row["error"]
    parts = await pg.fetchval(
        "SELECT count(*) FROM gateway.export_parts WHERE export_id = $1", export.id
    )
    assert parts == -(-row["bytes"] // 4096) and parts > 5
    downloaded = b"".join([chunk async for chunk in exports.archive_chunks(gateway_db, export.id)])
    assert len(downloaded) == row["bytes"]
    assert hashlib.sha256(downloaded).hexdigest() == row["archive_sha256"]
    archive = zipfile.ZipFile(io.BytesIO(downloaded))
    assert archive.read("metrics/noise.ndjson") == lines
    manifest = orjson.loads(archive.read("manifest.json"))
    assert ("metrics/noise.ndjson", 300) in [(f["path"], f["rows"]) for f in manifest["files"]]


async def test_stopping_the_gateway_fails_the_exports_it_was_building(
    stack: Stack, gateway_db: Database, pg: asyncpg.Connection, signer: Signer
) -> None:
    asked = asyncio.Event()

    async def never(request: httpx.Request) -> httpx.Response:
        asked.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async with httpx.AsyncClient(transport=httpx.MockTransport(never)) as client:
        runner = ExportRunner(gateway_db, service_settings("gateway", stack.config), signer, client)
        tenant = await a_tenant(pg)
        async with gateway_db.session() as session:
            export = await create_export(session, tenant, "test")
        await runner.start(export)
        await asyncio.wait_for(asked.wait(), 10)
        await runner.stop()
    row = await export_row(pg, export.id)
    assert row["status"] == "failed" and "stopped" in row["error"]


async def test_exports_left_running_by_a_dead_gateway_fail_at_start_up(
    stack: Stack, gateway_db: Database, pg: asyncpg.Connection, signer: Signer
) -> None:
    tenant = f"tn_{secrets.token_hex(6)}"
    now = datetime.now(UTC)
    for export_id, heartbeat in (("dead", now - timedelta(minutes=5)), ("alive", now)):
        await pg.execute(
            "INSERT INTO gateway.exports (id, tenant_id, requested_by, status, created_at, "
            "heartbeat_at) VALUES ($1, $2, 'test', 'running', $3, $3)",
            f"ex_{export_id}_{tenant}",
            tenant,
            heartbeat,
        )
    async with httpx.AsyncClient() as client:
        runner = ExportRunner(gateway_db, service_settings("gateway", stack.config), signer, client)
        assert await runner.fail_abandoned() >= 1
    assert (await export_row(pg, f"ex_dead_{tenant}"))["status"] == "failed"
    # Another replica is building this one right now: its heartbeat is fresh.
    assert (await export_row(pg, f"ex_alive_{tenant}"))["status"] == "running"


async def test_unconfirmed_erasures_are_published_again_and_confirmations_counted_once(
    stack: Stack, gateway_db: Database, pg: asyncpg.Connection
) -> None:
    tenant = f"tn_{secrets.token_hex(6)}"
    erasure_id = f"er_{secrets.token_hex(6)}"
    pending = {s: {"status": "pending"} for s in erasures.SERVICES}
    await pg.execute(
        "INSERT INTO gateway.erasures (id, tenant_id, requested_by, requested_at, services) "
        "VALUES ($1, $2, 'test', $3, $4::jsonb)",
        erasure_id,
        tenant,
        datetime.now(UTC) - timedelta(minutes=5),
        orjson.dumps({**pending, "gateway": {"status": "done", "rows_deleted": 3}}).decode(),
    )
    settings = service_settings("gateway", stack.config)
    tracker = ErasureTracker(gateway_db, settings, 1.0)
    recorder = RecordingPublisher(settings)
    tracker.publisher = recorder
    assert await tracker.republish_pending() >= 1
    assert ("lodestar.tenant-erasures.v1", tenant) in [(t, k) for t, k, _ in recorder.sent]
    assert {"erasure_id": erasure_id, "tenant_id": tenant} in [m for _, _, m in recorder.sent]

    def done(service: str, rows: int, erasure: str = erasure_id) -> ErasureDone:
        return ErasureDone(erasure_id=erasure, tenant_id=tenant, service=service, rows_deleted=rows)

    await tracker.handle(
        records(
            b"{not json",
            done("x", 1, erasure="er_unknown"),
            done("ingest", 5),
            done("metrics", 5),
            # Redelivered: the first count stays.
            done("ingest", 0),
            done("nope", 1),
        )
    )
    shown = await latest(gateway_db, tenant)
    assert shown.status == "running"
    assert shown.services == {
        "gateway": "done",
        "ingest": "done",
        "metrics": "done",
        "targets": "pending",
    }
    assert shown.rows_deleted == {"gateway": 3, "ingest": 5, "metrics": 5}
    await tracker.handle(records(done("targets", 0)))
    shown = await latest(gateway_db, tenant)
    assert shown.status == "done" and shown.finished_at is not None
    recorder.sent.clear()
    await tracker.republish_pending()
    assert erasure_id not in [m["erasure_id"] for _, _, m in recorder.sent]


async def latest(db: Database, tenant_id: str) -> ErasureOut:
    async with db.session() as session:
        erasure = await ErasureRepository(session).latest(tenant_id)
    assert erasure is not None
    return erasures.out(erasure)


async def test_a_service_skips_unreadable_requests_and_confirms_what_it_erased(
    stack: Stack, pg: asyncpg.Connection
) -> None:
    tenant = f"tn_{secrets.token_hex(6)}"
    await pg.execute(
        "INSERT INTO targets.target_plans (tenant_id, id, name, year, metric, amount) "
        "VALUES ($1, gen_random_uuid(), 'FY', 2026, 'gmv', 1)",
        tenant,
    )
    db = Database(stack.config.database_url, "targets", pool_size=2)
    try:
        settings = service_settings("targets", stack.config)
        listener = ErasureListener("targets", db, settings)
        recorder = RecordingPublisher(settings)
        listener.publisher = recorder
        request = orjson.dumps({"erasure_id": "er_t", "tenant_id": tenant})
        # Erasing twice is harmless: the second confirms with nothing deleted.
        await listener.handle(records(b"[]", request, request))
    finally:
        await db.dispose()
    assert [(t, m["rows_deleted"]) for t, _, m in recorder.sent] == [
        (ERASURE_DONE_TOPIC, 1),
        (ERASURE_DONE_TOPIC, 0),
    ]
    assert recorder.sent[0][2] == {
        "erasure_id": "er_t",
        "tenant_id": tenant,
        "service": "targets",
        "rows_deleted": 1,
    }
    left = await pg.fetchval(
        "SELECT count(*) FROM targets.target_plans WHERE tenant_id = $1", tenant
    )
    assert left == 0
