"""The OpenAPI document says how to get a token and which scope each route needs.

FastAPI knows the routes' parameters but not our token checks: each route that
depends on ``require_access(scope)`` or ``require_scope(scope)`` (whose dependency
carries ``required_scope``), or on ``current_principal``, gets ``security`` naming the
OAuth2 scheme of CONTRACT §2 and the scope, so generated clients send the token.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts

from shared.auth import current_principal
from shared.scopes import ALL_SCOPES

SCHEME = "oauth2"
SCOPE_DESCRIPTIONS = {
    "platform:admin": "create tenants and their first clients",
    "tenant:admin": "manage users, clients, grants, settings of one tenant; export and erase",
    "connections:manage": "add, re-authorise, pause platform connections",
    "ingest:write": "push events",
    "kpi:read": "query KPIs, catalog, alerts",
    "alerts:manage": "create and change alert rules and webhook subscriptions",
    "targets:read": "read target plans",
    "targets:write": "draft target plans",
    "targets:approve": "approve target plans",
}
SECURITY_SCHEMES = {
    SCHEME: {
        "type": "oauth2",
        "description": "RS256 JWT access tokens (RFC 9068) from the gateway.",
        "flows": {
            "clientCredentials": {
                "tokenUrl": "/oauth/token",
                "scopes": {s: SCOPE_DESCRIPTIONS[s] for s in ALL_SCOPES},
            },
            "authorizationCode": {
                "authorizationUrl": "/oauth/authorize",
                "tokenUrl": "/oauth/token",
                "scopes": {s: SCOPE_DESCRIPTIONS[s] for s in ALL_SCOPES},
            },
        },
    }
}


def _scopes(dependant: Dependant) -> set[str] | None:
    """The scopes a route's dependencies require; an empty set when only a token is
    needed, None when the route takes no token."""
    found: set[str] | None = None
    for dependency in dependant.dependencies:
        call: Callable[..., Any] | None = dependency.call
        scope = getattr(call, "required_scope", None)
        if scope is not None:
            found = (found or set()) | {scope}
        elif call is current_principal:
            found = found or set()
        below = _scopes(dependency)
        if below is not None:
            found = (found or set()) | below
    return found


def with_security(app: FastAPI) -> None:
    """Makes ``app.openapi()`` add the scheme and each route's ``security``."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = build()
        document.setdefault("components", {})["securitySchemes"] = SECURITY_SCHEMES
        # Routes of included routers come as contexts (FastAPI's own walk of them).
        for route in iter_route_contexts(app.routes):
            if not isinstance(route.original_route, APIRoute) or not route.include_in_schema:
                continue
            scopes = _scopes(route.dependant)
            if scopes is None:
                continue
            operations = document.get("paths", {}).get(route.path_format, {})
            for method in route.methods or ():
                operation = operations.get(method.lower())
                if operation is not None:
                    operation["security"] = [{SCHEME: sorted(scopes)}]
        return document

    app.openapi = openapi  # type: ignore[method-assign]
