from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse

from services.gateway.erasures.tracker import refuse_erased_writes
from services.gateway.proxy.routes import OWNERS, owner_of_request
from services.gateway.proxy.service import forward, service_urls
from shared.auth import current_principal
from shared.errors import NotFound, Unauthenticated
from shared.input_guard import misread_body_refusal
from shared.paths import ANY_PATH
from shared.service import json_field_of

router = APIRouter(include_in_schema=False)


@router.get("/openapi.json")
async def openapi(request: Request) -> JSONResponse:
    own: dict[str, Any] = request.app.openapi()
    return JSONResponse(await request.app.state.openapi_merger.document(own))


def _owner(request: Request) -> tuple[str, str]:
    """The service that owns the request's path, and its base URL."""
    service = owner_of_request(request.scope)
    if service is None:
        raise NotFound(f"no route {request.url.path}")
    return service, service_urls(request.app.state.settings)[service]


async def _forwarded_to_a_known_caller(request: Request, method: str | None = None) -> Response:
    service, base = _owner(request)
    # A missing or bad token is answered first, whatever else is wrong with the request
    # (a method the route does not take), and whether or not the service is there:
    # which service is away is none of an anonymous caller's business.
    await _body_read_before_token(request, current_principal(request))
    return await forward(request, request.app.state.http, service, base, method=method)


async def _body_read_before_token(request: Request, token_check: Awaitable[object]) -> None:
    """What no route reads (a name given twice, NaN) is refused before the token, as on
    the gateway's own routes and at the service: the guard leaves a forwarded body to
    the service, which a request without a good token never reaches."""
    try:
        await token_check
    except Unauthenticated:
        refused = misread_body_refusal(request.scope, await request.body(), json_field_of)
        if refused is not None:
            raise refused from None
        raise


async def _writes_of_erased_refused(request: Request) -> None:
    await _body_read_before_token(request, refuse_erased_writes(request))


async def route(request: Request) -> Response:
    return await _forwarded_to_a_known_caller(request)


async def refuse_method(request: Request) -> Response:
    """A method no service route takes (OPTIONS outside a CORS preflight, TRACE,
    CONNECT): the service's own 405, asked by OPTIONS, names what its route takes; the
    gateway alone knows only that it forwards five methods (RFC 9110 §15.5.6)."""
    return await _forwarded_to_a_known_caller(request, method="OPTIONS")


# Only the services' paths: a catch-all of /v1/* would take the gateway's own paths
# asked with a method they do not take, which are 405 naming the ones they do.
# The caller is resolved (so log lines name the tenant) and checked by the dependency:
# the owning service checks the token again, but knows no revocation, and forgets
# erased tenants when it restarts.
for prefix in OWNERS:
    router.add_api_route(
        f"{prefix}{{rest:{ANY_PATH}}}",
        route,
        methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
        dependencies=[Depends(_writes_of_erased_refused)],
    )
    router.add_api_route(
        f"{prefix}{{rest:{ANY_PATH}}}", refuse_method, methods=["OPTIONS", "TRACE", "CONNECT"]
    )
