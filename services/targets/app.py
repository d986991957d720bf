"""The targets service: plans, decomposition, approvals and scorecards."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from services.targets.config import Settings, get_settings
from services.targets.plans.endpoints import router as plans_router
from shared.service import build_app, service_running
from shared.telemetry import setup_telemetry
from shared.tenant_data import tenant_data_router

SERVICE = "targets"


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    setup_telemetry(SERVICE, settings.otlp_endpoint, settings.log_level)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with service_running(app, settings, SERVICE):
            yield

    app = build_app(SERVICE, settings, lifespan=lifespan)
    app.include_router(plans_router)
    app.include_router(tenant_data_router())
    return app
