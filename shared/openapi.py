"""The OpenAPI document says how to get a token, which scope each route needs, and
what its errors look like.

FastAPI knows the routes' parameters but not our token checks: each route that
depends on ``require_access(scope)`` or ``require_scope(scope)`` (whose dependency
carries ``required_scope``), or on ``current_principal``, gets ``security`` naming the
OAuth2 scheme of CONTRACT §2 and the scope, so generated clients send the token.
Nor does it know our one error body (CONTRACT §2): every operation's error answers
are described with ``ErrorBody``, not FastAPI's own validation error, which no route
of ours ever sends.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts
from pydantic import BaseModel

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
                # A person's sign-in may also ask for an OpenID Connect ID token.
                "scopes": {
                    **{s: SCOPE_DESCRIPTIONS[s] for s in ALL_SCOPES},
                    "openid": "an OpenID Connect ID token too, and /oauth/userinfo",
                },
            },
        },
    }
}


def either_scope(*scopes: str) -> dict[str, Any]:
    """``openapi_extra`` of a route that takes any one of ``scopes`` and checks which
    in its own code (the platform admin, or the tenant's own admin)."""
    return {"security": [{SCHEME: [scope]} for scope in scopes]}


class ErrorItem(BaseModel):
    index: int | None = None
    row: int | None = None
    field: str
    reason: str


class ErrorBody(BaseModel):
    """CONTRACT §2's error body of every REST route."""

    error: str
    detail: str
    errors: list[ErrorItem] | None = None


# A created (201) or accepted (202) resource's own path, in its answer's headers.
LOCATED = {
    "headers": {
        "Location": {
            "description": "The path to read what was created",
            "schema": {"type": "string"},
        }
    }
}

# An answer a client may conditionally ask for again (If-None-Match) carries its tag.
TAGGED = {
    "ETag": {
        "description": "Send it back as If-None-Match: 304 while the answer is the same",
        "schema": {"type": "string"},
    }
}
# The request header that makes such an answer a 304, for routes that read it from the
# request rather than as an argument.
IF_NONE_MATCH = {
    "name": "If-None-Match",
    "in": "header",
    "required": False,
    "description": "The ETag of an answer held: 304 while it has not changed",
    "schema": {"type": "string"},
}
RETRY_AFTER = {
    "Retry-After": {
        "description": "Whole seconds to wait before sending the request again",
        "schema": {"type": "integer", "minimum": 1},
    }
}


def not_nullable(*names: str) -> Callable[[dict[str, Any]], None]:
    """A model's ``json_schema_extra`` for a change whose fields ``names`` may be left
    out but not be null (``X | None = None``, the null refused by the route, naming the
    field): the document shows them as X, with no ``"default": null``. Not by
    ``SkipJsonSchema[None]``: pydantic then reads a real union, and its errors name
    the union's branches (``stores.list[...].0``, ``stores.none``), not the field."""

    def documented(schema: dict[str, Any]) -> None:
        for name in names:
            field = schema["properties"][name]
            field.pop("default", None)
            branches = field.pop("anyOf", None)
            if branches is not None:
                field.update(next(b for b in branches if b != {"type": "null"}))

    return documented


# Operations whose path names something that need not exist before: 404 only for this.
_NOT_FOUND_BECAUSE = {
    ("put", "/v1/settings/stores/{store_id}"): "A store id that is `.` or `..` whole: a dot "
    "segment, which the gateway forwards in no path, however it is encoded.",
}

_ERROR_REF = {"$ref": "#/components/schemas/ErrorBody"}
# Statuses any route may answer, with when; 401 and 403 only where a token is taken,
# 404 only where the path names something.
_ERRORS = {
    "401": 'No valid token: `WWW-Authenticate: Bearer error="invalid_token"`.',
    "403": "The token lacks the route's scope (`insufficient_scope`, naming it), or the "
    "tenant or store named is not the caller's.",
    "404": "Nothing by that id for this tenant.",
    "408": "A body not received within 10 s and a second for each 32 KiB it declares "
    "(`request_timeout`).",
    "411": "A body over 1 MiB sent in chunks, without `Content-Length` (`length_required`).",
    "413": "A body over the size limit (`payload_too_large`).",
    "415": "A JSON body sent with another `Content-Type` than `application/json`, or "
    "compressed (`Content-Encoding` other than `identity`).",
    "422": "Invalid input: `errors` names each field (and `index` of a batch item); a "
    "body that is no JSON names `body`; a query parameter given twice, or unknown, "
    "names it, and `Authorization`, `Content-Type` or `Idempotency-Key` given twice "
    "`header.<name>`.",
    "429": "Over the client's rate limit; `Retry-After` says when to come back.",
    "431": "Request headers over 256 KiB in all (`request_header_fields_too_large`).",
    "503": "A service or the database is away for a moment; `Retry-After` says when to ask again.",
}


_QUERY_REFUSED = (
    "A query string that cannot be read: a NUL, bytes that are not UTF-8, or a parameter "
    "given twice (`invalid_input`, naming it)."
)
_ENCODING_REFUSED = "A compressed body (`Content-Encoding` other than `identity`)."


def _required_body_not_null(operation: dict[str, Any]) -> None:
    """A body the route takes as optional, to check the token first, but a client must
    send (``"required": true``) is not documented as possibly null."""
    body = operation.get("requestBody", {})
    if not body.get("required"):
        return
    for media in body.get("content", {}).values():
        branches = media.get("schema", {}).get("anyOf", [])
        if len(branches) == 2 and {"type": "null"} in branches:
            media["schema"] = next(branch for branch in branches if branch != {"type": "null"})


def _body_types(operation: dict[str, Any]) -> set[str]:
    return set(operation.get("requestBody", {}).get("content", {}))


def _describe_errors(document: dict[str, Any]) -> None:
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    body = ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(body.pop("$defs", {}))
    schemas["ErrorBody"] = body
    for path, operations in document.get("paths", {}).items():
        if not path.startswith("/v1/"):
            # OAuth answers RFC 6749's errors (its pages, HTML), GraphQL its own; what
            # every route's guards refuse before them is the contract's body all the same.
            for method, operation in operations.items():
                responses = operation.setdefault("responses", {})
                guarded = {"422": _QUERY_REFUSED, "431": _ERRORS["431"]}
                if "requestBody" in operation or method == "post":
                    guarded |= {status: _ERRORS[status] for status in ("408", "411", "413")}
                    guarded["415"] = _ENCODING_REFUSED
                for status, when in guarded.items():
                    # FastAPI's own 422 (HTTPValidationError) is never what we send.
                    if "HTTPValidationError" in json.dumps(responses.get(status)):
                        del responses[status]
                    responses.setdefault(status, {"description": when}).setdefault("content", {})[
                        "application/json"
                    ] = {"schema": _ERROR_REF}
                # A page's own refusals are HTML; the guards' before it, JSON.
                if "text/html" in responses.get("400", {}).get("content", {}):
                    responses["400"]["content"]["application/json"] = {"schema": _ERROR_REF}
                # Every route but the probes counts against the caller's rate.
                limited = responses.setdefault(
                    "429",
                    {
                        "description": _ERRORS["429"],
                        "content": {"application/json": {"schema": _ERROR_REF}},
                    },
                )
                limited.setdefault("headers", {}).update(RETRY_AFTER)
            continue
        for method, operation in operations.items():
            _required_body_not_null(operation)
            responses = operation.setdefault("responses", {})
            for status, when in _ERRORS.items():
                if status in ("401", "403") and "security" not in operation:
                    continue
                if status == "404" and "{" not in path:
                    continue
                if status == "404":
                    when = _NOT_FOUND_BECAUSE.get((method, path), when)
                if status in ("408", "411", "413") and "requestBody" not in operation:
                    continue
                if status == "415" and "application/json" not in _body_types(operation):
                    continue
                answer = responses.setdefault(status, {"description": when})
                # FastAPI's own 422 (HTTPValidationError) is never what we send.
                answer["content"] = {"application/json": {"schema": _ERROR_REF}}
                if status in ("429", "503"):
                    answer.setdefault("headers", {}).update(RETRY_AFTER)
    if '"#/components/schemas/HTTPValidationError"' not in json.dumps(document["paths"]):
        for unused in ("HTTPValidationError", "ValidationError"):
            schemas.pop(unused, None)


def route_scopes(dependant: Dependant) -> set[str] | None:
    """The scopes a route's dependencies require; an empty set when only a token is
    needed, None when the route takes no token."""
    found: set[str] | None = None
    for dependency in dependant.dependencies:
        call: Callable[..., Any] | None = dependency.call
        scope = getattr(call, "required_scope", None)
        if scope is not None:
            found = (found or set()) | {scope}
        elif call is current_principal or getattr(call, "checks_access", False):
            found = found or set()
        below = route_scopes(dependency)
        if below is not None:
            found = (found or set()) | below
    return found


def with_schemas(app: FastAPI, schemas: dict[str, Any]) -> None:
    """Adds component ``schemas`` that routes refer to from bodies they read themselves
    (FastAPI lists only the models of its signatures)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = build()
        document.setdefault("components", {}).setdefault("schemas", {}).update(schemas)
        return document

    app.openapi = openapi  # type: ignore[method-assign]


def with_security(app: FastAPI) -> None:
    """Makes ``app.openapi()`` add the scheme, each route's ``security`` and its error
    answers."""
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
            scopes = route_scopes(route.dependant)
            if scopes is None:
                continue
            operations = document.get("paths", {}).get(route.path_format, {})
            for method in route.methods or ():
                operation = operations.get(method.lower())
                # A route that checks its scopes itself says which (see EITHER_ADMIN).
                if operation is not None and "security" not in operation:
                    operation["security"] = [{SCHEME: sorted(scopes)}]
        _describe_errors(document)
        return document

    app.openapi = openapi  # type: ignore[method-assign]
