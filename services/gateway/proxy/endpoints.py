from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse

from services.gateway.erasures.tracker import refuse_erased_writes
from services.gateway.proxy.routes import OWNERS, owner_of
from services.gateway.proxy.service import forward, service_urls
from shared.errors import NotFound

router = APIRouter(include_in_schema=False)


@router.get("/openapi.json")
async def openapi(request: Request) -> JSONResponse:
    own: dict[str, Any] = request.app.openapi()
    return JSONResponse(await request.app.state.openapi_merger.document(own))


async def route(request: Request) -> Response:
    service = owner_of(request.url.path)
    if service is None:
        raise NotFound(f"no route {request.url.path}")
    base = service_urls(request.app.state.settings)[service]
    return await forward(request, request.app.state.http, service, base)


# Only the services' paths: a catch-all of /v1/* would take the gateway's own paths
# asked with a method they do not take, which are 405 naming the ones they do.
# The caller is resolved (so log lines name the tenant) and checked by the dependency:
# the owning service checks the token again, but knows no revocation, and forgets
# erased tenants when it restarts.
for prefix in OWNERS:
    router.add_api_route(
        f"{prefix}{{rest:path}}",
        route,
        methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
        dependencies=[Depends(refuse_erased_writes)],
    )
