from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse

from services.gateway.erasures.tracker import refuse_erased_writes
from services.gateway.proxy.routes import owner_of
from services.gateway.proxy.service import forward, service_urls
from shared.auth import TokenRevoked, current_principal
from shared.errors import NotFound, Unauthenticated

router = APIRouter(include_in_schema=False)


@router.get("/openapi.json")
async def openapi(request: Request) -> JSONResponse:
    own: dict[str, Any] = request.app.openapi()
    return JSONResponse(await request.app.state.openapi_merger.document(own))


# The services forget erased tenants when they restart; the gateway does not.
@router.api_route(
    "/v1/{path:path}",
    methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
    dependencies=[Depends(refuse_erased_writes)],
)
async def route(request: Request, path: str) -> Response:
    service = owner_of(request.url.path)
    if service is None:
        raise NotFound(f"no route {request.url.path}")
    if "authorization" in request.headers:
        try:
            await current_principal(request)
        except Unauthenticated as exc:
            # The owning service checks the token itself and answers 401 or 403, but
            # would take a revoked one: only the gateway knows revocations.
            if isinstance(exc, TokenRevoked):
                raise
    base = service_urls(request.app.state.settings)[service]
    return await forward(request, request.app.state.http, service, base)
