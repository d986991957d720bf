"""Helpers for gateway tests: a gateway of the test's own in front of fake services."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

from devstack.embedded import free_port
from devstack.stack import service_settings
from services.gateway.app import create_app
from tests.conftest import Stack, serve_app


@asynccontextmanager
async def own_gateway(stack: Stack, **overrides: Any) -> AsyncIterator[httpx.AsyncClient]:
    """A second gateway on the stack's database (same keys and clients, so the stack's
    tokens work), with settings overridden, e.g. a service URL pointing at a fake."""
    port = free_port()
    settings = service_settings("gateway", stack.config).model_copy(
        update={"port": port, **overrides}
    )
    async with (
        serve_app(create_app(settings), "127.0.0.1", port),
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30.0) as client,
    ):
        yield client


@asynccontextmanager
async def fake_service(app: Any) -> AsyncIterator[str]:
    """Runs a fake downstream app; yields its base URL."""
    port = free_port()
    async with serve_app(app, "127.0.0.1", port):
        yield f"http://127.0.0.1:{port}"
