"""The targets service: plans, decomposition, approvals and scorecards."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from services.targets.config import Settings, get_settings
from services.targets.plans.endpoints import router as plans_router
from shared.db import Database
from shared.erasure import ErasureListener
from shared.service import build_app, gateway_checks
from shared.telemetry import setup_telemetry
from shared.tenant_data import tenant_data_router

SERVICE = "targets"


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    setup_telemetry(SERVICE, settings.otlp_endpoint, settings.log_level)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with gateway_checks(app, settings):
            app.state.db = Database(settings.database_url, SERVICE)
            erasure = ErasureListener(SERVICE, app.state.db, settings)
            app.state.erased = erasure.erased
            erasure.start()
            try:
                yield
            finally:
                await erasure.stop()
                await app.state.db.dispose()

    app = build_app(SERVICE, settings, lifespan=lifespan)
    app.include_router(plans_router)
    app.include_router(tenant_data_router())
    return app
