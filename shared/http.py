"""Outgoing HTTP: one httpx client per process, trace context on every request."""

from __future__ import annotations

from urllib.parse import SplitResult

import httpx

from shared.telemetry import inject_headers
from shared.transport import ServiceTransport

# On a KPI answer between services: the tenant data version it shows (metrics sets it,
# the gateway reads it).
DATA_VERSION_HEADER = "Lodestar-Data-Version"
# On a KPI question from the gateway's GraphQL: the rows it takes at most, so that
# metrics refuses a larger answer as it grows instead of building it whole.
MOST_ROWS_HEADER = "Lodestar-Most-Rows"
# How metrics' refusal of an answer over that bound (or its own) begins.
TOO_MANY_ROWS = "the answer would hold more than"


async def _propagate_trace(request: httpx.Request) -> None:
    for name, value in inject_headers().items():
        request.headers[name] = value


# Shorter than the keep-alive of the services' servers (uvicorn: 5 s), so a pooled
# connection is never reused just as the other side closes it, which surfaces as a
# "server disconnected" error on a request that did nothing wrong.
KEEPALIVE_SECONDS = 2.0


def make_client(timeout: float = 30.0, **kwargs: object) -> httpx.AsyncClient:
    """An AsyncClient that carries the caller's trace to the next service."""
    fallback = httpx.AsyncHTTPTransport(
        limits=httpx.Limits(max_connections=100, keepalive_expiry=KEEPALIVE_SECONDS)
    )
    return httpx.AsyncClient(
        timeout=httpx.Timeout(timeout, connect=5.0),
        transport=ServiceTransport(KEEPALIVE_SECONDS, fallback),
        event_hooks={"request": [_propagate_trace]},
        **kwargs,  # type: ignore[arg-type]
    )


def port_is_usable(url: SplitResult) -> bool:
    """Whether a URL's port, if it names one, is one a browser opens: a number from 1 to
    65535, not an empty one after a colon."""
    try:
        port = url.port
    except ValueError:
        return False
    return port != 0 and not url.netloc.endswith(":")
