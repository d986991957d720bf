"""The metrics service: facts, rollups and KPI queries."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request

from services.metrics.config import Settings, get_settings
from services.metrics.facts.consumer import FactConsumer
from services.metrics.kpis.endpoints import router as kpis_router
from services.metrics.kpis.tenants import TenantCurrencies
from services.metrics.settings.endpoints import ZoneChangeTurns
from services.metrics.settings.endpoints import router as settings_router
from shared.service import build_app, service_running
from shared.telemetry import setup_telemetry
from shared.tenant_data import tenant_data_router

SERVICE = "metrics"


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    setup_telemetry(SERVICE, settings.otlp_endpoint, settings.log_level)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with service_running(app, settings, SERVICE) as db:
            app.state.tenant_currencies = TenantCurrencies(
                settings.gateway_url, app.state.grant_lookup.client
            )
            # The erasure listener (its own consumer group) and the fact consumer skip
            # the same erased tenants.
            consumer = FactConsumer(db, settings, erased=app.state.erased)
            app.state.consumer = consumer
            app.state.readiness_checks = {"consumer": consumer.readiness}
            app.state.zone_change_turns = ZoneChangeTurns()
            consumer.start()
            try:
                yield
            finally:
                await consumer.stop()

    app = build_app(SERVICE, settings, lifespan=lifespan)
    app.include_router(kpis_router)
    app.include_router(settings_router)
    app.include_router(tenant_data_router())

    @app.get("/internal/consumer", include_in_schema=False)
    async def consumer_counters(request: Request) -> dict[str, Any]:
        """The consumer's own counters: lag is measured from these, not broker offsets."""
        counters = request.app.state.consumer.counters
        return {
            "batches": counters.batches,
            "records": counters.records,
            "applied": counters.applied,
            "repeats": counters.repeats,
            "deadlettered": counters.deadlettered,
            "last_ingested_at": counters.last_ingested_at,
        }

    return app
