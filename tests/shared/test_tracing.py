"""Server spans of every service's requests (``TracingMiddleware``)."""

from __future__ import annotations

import httpx
from fastapi import FastAPI
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from starlette.types import Receive, Scope, Send

from shared.revocations import REVOKED_TOKENS_PATH
from shared.service import TracingMiddleware

TRACE = "0af7651916cd43dd8448eb211c80319c"


async def answer_ok(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


async def test_requests_get_spans_in_the_callers_trace_but_probes_and_polls_none() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    middleware = TracingMiddleware(answer_ok, "tracing-test")
    middleware.tracer = provider.get_tracer("tracing-test")
    transport = httpx.ASGITransport(app=middleware)
    async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
        for path in ("/healthz", "/readyz", REVOKED_TOKENS_PATH):
            assert (await client.get(path)).status_code == 200
        traced = await client.get(
            "/v1/kpis", headers={"traceparent": f"00-{TRACE}-b7ad6b7169203331-01"}
        )
        assert traced.status_code == 200
    spans = exporter.get_finished_spans()
    assert [span.name for span in spans] == ["GET /v1/kpis"]
    assert spans[0].context is not None
    assert f"{spans[0].context.trace_id:032x}" == TRACE
    assert spans[0].attributes is not None
    assert spans[0].attributes["http.response.status_code"] == 200


async def test_a_routed_request_is_named_by_its_route_not_its_ids() -> None:
    """A span per user, tenant or grant id made an operation of each in a trace backend."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    app = FastAPI()

    @app.patch("/v1/users/{user_id}")
    async def change(user_id: str) -> dict[str, str]:
        return {"id": user_id}

    middleware = TracingMiddleware(app, "tracing-test")
    middleware.tracer = provider.get_tracer("tracing-test")
    transport = httpx.ASGITransport(app=middleware)
    async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
        assert (await client.patch("/v1/users/us_1")).status_code == 200
    [span] = exporter.get_finished_spans()
    assert span.name == "PATCH /v1/users/{user_id}"
    assert span.attributes is not None
    assert span.attributes["http.route"] == "/v1/users/{user_id}"
    assert span.attributes["url.path"] == "/v1/users/us_1"
