"""How long the gateway waits for a service, and what it says when it stops waiting."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from starlette.requests import Request

from services.gateway.proxy.service import REBUCKETING_SECONDS, forward
from shared.errors import UpstreamUnavailable


def request_for(method: str, path: str) -> Request:
    scope: dict[str, Any] = {
        "type": "http",
        "method": method,
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [(b"host", b"gateway"), (b"content-type", b"application/json")],
        "client": ("127.0.0.1", 1),
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"{}", "more_body": False}

    return Request(scope, receive)


async def test_a_store_zone_change_is_waited_for_as_long_as_a_rebucketing_takes() -> None:
    """340,000 lines rebucketed outlasted the 30 s the gateway waits: the caller had a
    503, and the zone was set after it."""
    waited: dict[str, float] = {}

    def service(request: httpx.Request) -> httpx.Response:
        waited[f"{request.method} {request.url.path}"] = request.extensions["timeout"]["read"]
        return httpx.Response(200, json={})

    async with httpx.AsyncClient(transport=httpx.MockTransport(service), timeout=30.0) as client:
        for method, path in (("PUT", "/v1/settings/stores/s1"), ("GET", "/v1/kpis")):
            await forward(request_for(method, path), client, "metrics", "http://metrics")
    assert waited == {"PUT /v1/settings/stores/s1": REBUCKETING_SECONDS, "GET /v1/kpis": 30.0}


async def test_a_service_that_did_not_answer_a_write_in_time_may_still_have_done_it() -> None:
    def service(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("no answer", request=request)

    async with httpx.AsyncClient(transport=httpx.MockTransport(service)) as client:
        for method, maybe_done in (("PUT", True), ("GET", False)):
            with pytest.raises(UpstreamUnavailable) as refused:
                await forward(request_for(method, "/v1/settings/kpi"), client, "metrics", "m")
            said = str(refused.value)
            assert said.startswith("the metrics service did not answer in time"), said
            assert ("may still take effect there" in said) is maybe_done, method
