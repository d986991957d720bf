"""The ingest service: the push API and the outbox relay (connectors come later)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from services.ingest.config import Settings, get_settings
from services.ingest.connections.crypto import CredentialBox, check_stored_credentials
from services.ingest.connections.endpoints import router as connections_router
from services.ingest.events.endpoints import csv_router
from services.ingest.events.endpoints import router as events_router
from services.ingest.events.schemas import EVENT_COMPONENTS
from services.ingest.outbox.relay import OutboxRelay
from shared.openapi import with_schemas
from shared.service import build_app, service_running
from shared.telemetry import setup_telemetry
from shared.tenant_data import tenant_data_router

SERVICE = "ingest"


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    setup_telemetry(SERVICE, settings.otlp_endpoint, settings.log_level)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with service_running(app, settings, SERVICE) as db:
            relay = OutboxRelay(db, settings)
            app.state.relay = relay
            app.state.credential_box = CredentialBox(settings.credentials_key)
            async with db.raw_connection() as conn:
                await check_stored_credentials(conn, app.state.credential_box)
            relay.start()
            try:
                yield
            finally:
                await relay.stop()

    app = build_app(SERVICE, settings, lifespan=lifespan)
    # The CSV route first: /v1/events:csv must not be taken for /v1/events.
    app.include_router(csv_router)
    app.include_router(events_router)
    app.include_router(connections_router)
    app.include_router(tenant_data_router())
    with_schemas(app, EVENT_COMPONENTS)
    return app
