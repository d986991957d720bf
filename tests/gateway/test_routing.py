"""Routing `/v1/*` to the owning service, the merged OpenAPI document, health."""

from __future__ import annotations

import httpx
from fastapi import FastAPI, Request, Response

from devstack.embedded import free_port
from devstack.stack import service_settings
from services.gateway.app import create_app
from tests.conftest import NewTenant, Stack, serve_app


async def test_downstream_status_body_and_headers_pass_through(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant(scopes=["kpi:read"])
    response = await http.get(
        "/v1/kpis",
        params={"metrics": "gmv", "from": "2026-02-01", "to": "2026-01-01", "grain": "day"},
        headers=tenant.headers,
    )
    assert response.status_code == 422
    assert response.json()["errors"] == [{"field": "from", "reason": "must not be after to"}]
    csv = await http.get(
        "/v1/kpis",
        params={"metrics": "gmv", "from": "2026-01-01", "to": "2026-01-02", "grain": "total"},
        headers={**tenant.headers, "Accept": "text/csv"},
    )
    assert csv.status_code == 200
    assert csv.headers["content-type"].startswith("text/csv")
    assert csv.text.splitlines()[0] == "period,metric,value,previous,change,currency"


async def test_unknown_v1_route_is_404(http: httpx.AsyncClient, new_tenant: NewTenant) -> None:
    tenant = await new_tenant()
    response = await http.get("/v1/nothing-here", headers=tenant.headers)
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


async def test_downstream_down_is_503_naming_it(stack: Stack, new_tenant: NewTenant) -> None:
    tenant = await new_tenant()
    config = stack.config
    port = free_port()
    settings = service_settings("gateway", config).model_copy(
        update={"port": port, "targets_url": f"http://127.0.0.1:{free_port()}"}
    )
    app = create_app(settings)
    async with (
        serve_app(app, "127.0.0.1", port),
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client,
    ):
        response = await client.get("/v1/targets/plans", headers=tenant.headers)
        document = (await client.get("/openapi.json")).json()
    assert response.status_code == 503
    assert response.json() == {
        "error": "unavailable",
        "detail": "the targets service is unavailable",
    }
    assert document["x-lodestar-unavailable"] == ["targets"]
    assert "/v1/kpis" in document["paths"]


async def test_merged_openapi_has_every_services_v1_routes(http: httpx.AsyncClient) -> None:
    document = (await http.get("/openapi.json")).json()
    paths = set(document["paths"])
    assert {
        "/v1/tenants",
        "/v1/tenants/{tenant_id}/clients",
        "/v1/events",
        "/v1/kpis",
        "/v1/kpis/catalog",
        "/v1/targets/plans",
        "/oauth/token",
    } <= paths
    assert "x-lodestar-unavailable" not in document
    assert "/healthz" not in paths
    refs = _refs(document["paths"])
    assert refs <= set(document["components"]["schemas"])


def _refs(node: object) -> set[str]:
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                found.add(value.rsplit("/", 1)[-1])
            else:
                found |= _refs(value)
    elif isinstance(node, list):
        for item in node:
            found |= _refs(item)
    return found


async def test_health_and_readiness_of_every_service(stack: Stack) -> None:
    async with httpx.AsyncClient() as client:
        for service in ("gateway", "ingest", "metrics", "targets"):
            assert (await client.get(f"{stack.url(service)}/healthz")).json() == {"status": "ok"}
            ready = await client.get(f"{stack.url(service)}/readyz")
            assert ready.status_code == 200
            assert ready.json()["checks"] == {"database": "ok", "broker": "ok"}


async def test_readiness_fails_when_the_broker_is_unreachable(stack: Stack) -> None:
    port = free_port()
    settings = service_settings("targets", stack.config).model_copy(
        update={"port": port, "kafka_bootstrap_servers": f"127.0.0.1:{free_port()}"}
    )
    from services.targets.app import create_app as create_targets

    app = create_targets(settings)
    async with serve_app(app, "127.0.0.1", port), httpx.AsyncClient() as client:
        ready = await client.get(f"http://127.0.0.1:{port}/readyz")
    assert ready.status_code == 503
    assert ready.json()["checks"]["broker"] == "unreachable"


async def test_fake_downstream_errors_reach_the_caller_unchanged(stack: Stack) -> None:
    fake = FastAPI()

    @fake.get("/v1/targets/plans")
    async def plans(request: Request) -> Response:
        return Response(
            b'{"error":"rate_limited","detail":"slow down"}',
            status_code=429,
            headers={"Retry-After": "7", "Content-Type": "application/json"},
        )

    fake_port, port = free_port(), free_port()
    settings = service_settings("gateway", stack.config).model_copy(
        update={"port": port, "targets_url": f"http://127.0.0.1:{fake_port}"}
    )
    async with (
        serve_app(fake, "127.0.0.1", fake_port),
        serve_app(create_app(settings), "127.0.0.1", port),
        httpx.AsyncClient() as client,
    ):
        response = await client.get(
            f"http://127.0.0.1:{port}/v1/targets/plans", params={"year": "2026"}
        )
    assert response.status_code == 429
    assert response.headers["retry-after"] == "7"
    assert response.json() == {"error": "rate_limited", "detail": "slow down"}
