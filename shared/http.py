"""Outgoing HTTP: one httpx client per process, trace context on every request."""

from __future__ import annotations

import httpx

from shared.telemetry import inject_headers


async def _propagate_trace(request: httpx.Request) -> None:
    for name, value in inject_headers().items():
        request.headers[name] = value


def make_client(timeout: float = 30.0, **kwargs: object) -> httpx.AsyncClient:
    """An AsyncClient that carries the caller's trace to the next service."""
    return httpx.AsyncClient(
        timeout=httpx.Timeout(timeout, connect=5.0),
        event_hooks={"request": [_propagate_trace]},
        **kwargs,  # type: ignore[arg-type]
    )
