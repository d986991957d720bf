"""The gateway's GraphQL schema, assembled from the domain modules."""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

import orjson
import strawberry
from cross_web import AsyncHTTPRequestAdapter, HTTPException
from fastapi import FastAPI
from fastapi.routing import APIRoute
from graphql import (
    DefinitionNode,
    FieldNode,
    FragmentDefinitionNode,
    OperationDefinitionNode,
    parse,
)
from graphql.error import GraphQLError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from strawberry.extensions import (
    AddValidationRules,
    MaxTokensLimiter,
    ParserCache,
)
from strawberry.fastapi import GraphQLRouter
from strawberry.http import GraphQLHTTPResponse, GraphQLRequestData, process_result
from strawberry.types import ExecutionResult

from services.gateway.graphql.context import Context, get_context
from services.gateway.graphql.errors import ErrorCodes, NamedValueErrors
from services.gateway.graphql.kpis import KpiQuery
from services.gateway.graphql.limits import (
    BoundedValidation,
    alias_limit,
    depth_limit,
)
from services.gateway.graphql.revalidation import (
    GraphqlOverGet,
    RememberAnswers,
    RememberedGraphql,
)
from services.gateway.graphql.types import DATE
from shared.errors import InsufficientScope, LodestarError, RateLimited, Unauthenticated
from shared.input_guard import loads_beyond_doubles
from shared.openapi import SCHEME
from shared.scopes import KPI_READ

MAX_DEPTH = 8
# Runs of an operation whose KPI fields read different states of a tenant's data
# before the last is answered as it comes (pushes landing faster than it runs).
CONSISTENT_ATTEMPTS = 3
MAX_ALIASES = 15
MAX_TOKENS = 2000
# A document of 2,000 tokens is some 20,000 characters; one of 14 MB (a comment) was
# parsed on the event loop and kept by the parser's and validator's caches, each.
MAX_QUERY_CHARACTERS = 32 * 1024
# The longest list an input takes is a filter's 200 values.
MAX_LIST_ITEMS = 1000
# graphql-core's words for it.
MULTIPLE_OPERATIONS = "Must provide operation name if query contains multiple operations."
# graphql-core's words for a document too big to check (its checks recurse past
# Python's limit at some 700 fields in one selection), which name no limit.
VALIDATION_ABORTED = "Validation aborted."
TOO_LARGE_TO_CHECK = (
    "the query is too large to check: ask for fewer fields in one selection "
    "(several hundred at most)"
)


@strawberry.type
class Query(KpiQuery):
    """The root query, assembled from the domain query types."""


class Schema(strawberry.Schema):
    def process_errors(self, errors: list[GraphQLError], execution_context: Any = None) -> None:
        # ErrorCodes logs the unexpected ones with their trace; expected errors
        # (bad input, no token) are answers, not faults, and are not logged. Only the
        # errors of a document that never ran come here (a syntax error), and they
        # never reach ErrorCodes: the query itself is wrong.
        for error in errors:
            if error.original_error is None and not (error.extensions or {}).get("code"):
                error.extensions = {**(error.extensions or {}), "code": "BAD_USER_INPUT"}
            if error.message == VALIDATION_ABORTED:
                error.message = TOO_LARGE_TO_CHECK


# The depth and alias limits are validation rules. Built once, so every request adds
# the very same rule classes and the validation cache below (keyed by schema, document
# and rules) finds the documents it has already validated.
LIMIT_RULES = (depth_limit(MAX_DEPTH), alias_limit(MAX_ALIASES))

schema = Schema(
    query=Query,
    scalar_overrides={datetime.date: DATE},
    extensions=[
        lambda: AddValidationRules(list(LIMIT_RULES)),
        NamedValueErrors,
        lambda: MaxTokensLimiter(max_token_count=MAX_TOKENS),
        # Dashboards send the same documents again and again: parse and validate once
        # (strawberry shares the caches between the per-request instances). A document
        # is cached only once it passed the limits above.
        lambda: ParserCache(maxsize=512),
        lambda: BoundedValidation(maxsize=512),
        ErrorCodes,
        RememberAnswers,
    ],
)


def _refusal(answer: GraphQLHTTPResponse) -> LodestarError | None:
    """The refusal an answer stands for, if it is one: any error for want of a valid
    token (401), nothing answered for want of scopes (403, naming them, RFC 6750) or
    for asking too fast (429). Other errors, a tenant the caller may not read included,
    stay in the body."""
    errors = [error for error in answer.get("errors") or [] if isinstance(error, dict)]
    extensions = [error.get("extensions") or {} for error in errors]
    for error, extension in zip(errors, extensions, strict=True):
        if extension.get("code") == Unauthenticated.graphql_code:
            return Unauthenticated(str(error.get("message") or "missing or invalid access token"))
    if answer.get("data") is not None or not errors:
        return None
    if all(extension.get("code") == RateLimited.graphql_code for extension in extensions):
        # Nothing answered because the caller asked too fast (each kpis field counts at
        # metrics): 429 with Retry-After, as the gateway's own limit answers.
        waits = [wait for e in extensions if isinstance(wait := e.get("retryAfter"), int)]
        return RateLimited(max(waits, default=1))
    scopes = {extension.get("scope") for extension in extensions}
    if any(extension.get("error") != InsufficientScope.code for extension in extensions) or not all(
        isinstance(scope, str) for scope in scopes
    ):
        return None
    return InsufficientScope(" ".join(sorted(str(scope) for scope in scopes)))


@lru_cache(maxsize=128)
def _definitions(query: str) -> tuple[DefinitionNode, ...] | None:
    """What a document defines; None for one that does not parse (or is over the token
    limit), which the schema then refuses with its own reason."""
    try:
        return tuple(parse(query, max_tokens=MAX_TOKENS).definitions)
    except GraphQLError:
        return None


def _operations(query: str) -> tuple[OperationDefinitionNode, ...] | None:
    definitions = _definitions(query)
    if definitions is None:
        return None
    return tuple(d for d in definitions if isinstance(d, OperationDefinitionNode))


def _schema_only(query: str | None) -> bool:
    """Whether a document asks for nothing but the schema (``__schema``, ``__type``,
    ``__typename``), which needs no token: its fragments too, used or not, which are on
    the schema's own types (``__Type``) alone."""
    definitions = _definitions(query) if query else None
    operations = [d for d in definitions or () if isinstance(d, OperationDefinitionNode)]
    fragments = [d for d in definitions or () if isinstance(d, FragmentDefinitionNode)]
    return (
        bool(operations)
        and all(
            isinstance(selection, FieldNode) and selection.name.value.startswith("__")
            for operation in operations
            for selection in operation.selection_set.selections
        )
        and all(f.type_condition.name.value.startswith("__") for f in fragments)
    )


def _list_too_long(value: object, path: str) -> str | None:
    """The path of the first list in ``value`` longer than ``MAX_LIST_ITEMS``."""
    if isinstance(value, list):
        if len(value) > MAX_LIST_ITEMS:
            return path
        items: Iterable[tuple[object, object]] = enumerate(value)
    elif isinstance(value, dict):
        items = value.items()
    else:
        return None
    for key, item in items:
        if (found := _list_too_long(item, f"{path}.{key}")) is not None:
            return found
    return None


async def _unauthenticated(context: object, query: str | None) -> ExecutionResult | None:
    """The refusal of a request without a valid token that asks for more than the
    schema, before its document is validated: checking it costs the gateway, and
    nobody known asked."""
    if not isinstance(context, Context) or _schema_only(query):
        return None
    try:
        await context.principal()
    except Unauthenticated as exc:
        refusal = GraphQLError(exc.detail, extensions=exc.graphql_extensions())
        return ExecutionResult(data=None, errors=[refusal])
    except LodestarError:
        return None  # not known now (the revocations unread): the fields say so
    return None


async def _after_the_token(
    context: object, query: str | None, result: ExecutionResult
) -> ExecutionResult:
    """A document refused before it ran (wrong input, say) is refused for want of a token,
    or of the scope, first, as every request is, unless it asks only for the schema."""
    if result.data is not None or not result.errors or _schema_only(query):
        return result
    if any(error.path is not None for error in result.errors):
        return result  # it ran: its fields said why themselves
    if not isinstance(context, Context) or any(
        (error.extensions or {}).get("code") == Unauthenticated.graphql_code
        for error in result.errors
    ):
        return result
    try:
        # Every field beyond the schema's needs kpi:read: a token without it learns
        # nothing of what the schema would say of its document.
        (await context.principal()).require(KPI_READ)
    except (Unauthenticated, InsufficientScope) as exc:
        refusal = GraphQLError(exc.detail, extensions=exc.graphql_extensions())
        return ExecutionResult(data=None, errors=[refusal])
    return result


class Router(GraphQLRouter[object, None]):
    def encode_json(self, data: object) -> bytes:
        return orjson.dumps(data)

    def decode_json(self, data: str | bytes) -> object:
        # The standard library's parser recurses, and a body nested a thousand deep
        # raised RecursionError (a 500, before any token was read); orjson refuses
        # beyond 1,024 levels with the JSONDecodeError Strawberry answers 400 for.
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError as refused:
            # A variable of 1e400 is JSON, for its field to be named.
            try:
                return loads_beyond_doubles(data)
            except (ValueError, RecursionError):
                raise refused from None

    async def execute_single(
        self,
        request: Request,
        request_adapter: AsyncHTTPRequestAdapter,
        sub_response: Response,
        context: object,
        root_value: None,
        request_data: GraphQLRequestData,
    ) -> ExecutionResult:
        """The GraphQL spec (GetOperation): a document of several operations needs an
        operationName. Strawberry runs the first instead, so it is refused here, as the
        view refuses an unknown operationName: 400, BAD_USER_INPUT."""
        query = request_data.query
        if query and len(query) > MAX_QUERY_CHARACTERS:
            raise HTTPException(
                400, f"the query has {len(query):,} characters; at most {MAX_QUERY_CHARACTERS:,}"
            )
        if (refused := await _unauthenticated(context, query)) is not None:
            return refused
        if (long_list := _list_too_long(request_data.variables, "variables")) is not None:
            # Converted for every field that uses it, before any field's own limit: one
            # of 340,000 strings used by 75 filters held the event loop 6 s.
            raise HTTPException(
                400, f"{long_list}: at most {MAX_LIST_ITEMS:,} items in a list variable"
            )
        named: object = request_data.operation_name
        if named is not None and not isinstance(named, str):
            # Strawberry passes it on as sent: a list was "Unknown operation named "['A']"".
            raise HTTPException(400, "operationName must be a string or null")
        if named is None and query and len(_operations(query) or ()) > 1:
            raise HTTPException(400, MULTIPLE_OPERATIONS)
        for _ in range(CONSISTENT_ATTEMPTS - 1):
            result = await super().execute_single(
                request, request_adapter, sub_response, context, root_value, request_data
            )
            if not (isinstance(context, Context) and context.disagreed()):
                return await _after_the_token(context, query, result)
            # A push landed between two fields' reads: a KPI card would not match the
            # breakdown beside it. Read them all again.
            context.start_over()
        result = await super().execute_single(
            request, request_adapter, sub_response, context, root_value, request_data
        )
        return await _after_the_token(context, query, result)

    async def process_result(
        self, request: Request, result: ExecutionResult
    ) -> GraphQLHTTPResponse:
        """GraphQL spec §7.1.2: an answer to a request refused before it ran (a document
        that does not parse or validate, variables that do not coerce, no valid token)
        has no ``data`` entry; one that ran and lost its non-null root field to an error
        has ``null``. Only errors raised in execution have a ``path``."""
        answer = process_result(result)
        refused_whole = result.errors and (
            all(e.path is None for e in result.errors)
            # No valid token: the request is refused as a whole (401), whichever step
            # found it out.
            or all(
                (e.extensions or {}).get("code") == Unauthenticated.graphql_code
                for e in result.errors
            )
        )
        if result.data is None and refused_whole:
            del answer["data"]
            for error in answer.get("errors") or []:
                # Refused whole, as a request before it runs: found out by a field that
                # ran, the error would still name it, and tell the answer ran.
                if isinstance(error, dict):
                    error.pop("path", None)
        return answer

    def create_response(
        self,
        response_data: GraphQLHTTPResponse | list[GraphQLHTTPResponse],
        sub_response: Response,
    ) -> Response:
        """CONTRACT §2, over GraphQL as over REST: a missing or invalid token is 401 with
        the Bearer challenge, and a valid token without the scope the query needs is 403
        with ``insufficient_scope`` naming it; the body keeps the GraphQL errors. Any other
        answer is 200 (a tenant the caller may not read is FORBIDDEN in the body), and a
        query that needs no token (introspection) is answered whatever token came with it."""
        response = super().create_response(response_data, sub_response)
        refused = _refusal(response_data) if isinstance(response_data, dict) else None
        if refused is not None:
            response.status_code = refused.status
            response.headers.update(refused.headers)
        return response


_GRAPHQL_ANSWER = {
    "type": "object",
    "description": "`data` (absent when the request was refused before it ran, GraphQL "
    "spec §7.1.2), and `errors` each with `message`, `path` and `extensions.code` "
    "(CONTRACT §2: BAD_USER_INPUT, UNAUTHENTICATED, FORBIDDEN, NOT_FOUND, RATE_LIMITED, "
    "INTERNAL); "
    "`extensions.errors` names each input field refused, `extensions.retryAfter` when "
    "to ask again.",
    "properties": {
        "data": {"type": ["object", "null"]},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["message", "extensions"],
                "properties": {
                    "message": {"type": "string"},
                    "path": {"type": "array", "items": {"type": ["string", "integer"]}},
                    "extensions": {
                        "type": "object",
                        "required": ["code"],
                        "properties": {
                            "code": {"type": "string"},
                            "error": {"type": "string"},
                            "errors": {"type": "array", "items": {"type": "object"}},
                            "retryAfter": {"type": "integer"},
                            "scope": {"type": "string"},
                        },
                    },
                },
            },
        },
    },
}
_AS_GRAPHQL = {"application/json": {"schema": _GRAPHQL_ANSWER}}
# What the whole request may get besides 200, the body always a GraphQL answer.
_REFUSALS: dict[int | str, dict[str, Any]] = {
    400: {
        "description": "No query, a query over 32,768 characters, variables that are no "
        "JSON object, an unknown or missing operationName, a JSON array (batching), a body "
        "that is no UTF-8"
    },
    401: {
        "description": "No valid token for a query that reads data: `WWW-Authenticate: "
        'Bearer error="invalid_token"`'
    },
    403: {"description": "The token lacks `kpi:read` (`insufficient_scope`)"},
    413: {"description": "A body over 1 MiB"},
    415: {
        "description": "A body sent as another type than `application/json`, or "
        "compressed (`Content-Encoding`)"
    },
    422: {"description": "A NUL in the query or the body, or a lone UTF-16 surrogate"},
    429: {"description": "Over the client's rate limit; `Retry-After`"},
}
_QUERY_PARAMETERS = [
    {"name": "query", "in": "query", "schema": {"type": "string"},
     "description": "The document; without it, and with `Accept: text/html`, GraphiQL"},
    {"name": "variables", "in": "query", "schema": {"type": "string"},
     "description": "A JSON object"},
    {"name": "operationName", "in": "query", "schema": {"type": "string"}},
]  # fmt: skip
_GET_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The answer (JSON), or GraphiQL (HTML) when no query is given",
        "content": {**_AS_GRAPHQL, "text/html": {"schema": {"type": "string"}}},
    },
    405: {"description": "A mutation (send it by POST); `Allow: POST`", "content": _AS_GRAPHQL},
    **{k: {**v, "content": _AS_GRAPHQL} for k, v in _REFUSALS.items() if k not in (413, 415)},
}
_POST_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The answer; a field refused is in `errors` beside the others' data",
        "content": _AS_GRAPHQL,
    },
    **{k: {**v, "content": _AS_GRAPHQL} for k, v in _REFUSALS.items()},
}
_POST_BODY = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["query"],
                "properties": {
                    "query": {"type": "string"},
                    "variables": {"type": ["object", "null"]},
                    "operationName": {"type": ["string", "null"]},
                },
            }
        }
    },
}
# Every data field needs kpi:read; the GraphiQL page and introspection need no token.
_SECURITY = {"security": [{SCHEME: [KPI_READ]}, {}]}
_DESCRIBED: dict[str, tuple[str, dict[int | str, dict[str, Any]], dict[str, Any]]] = {
    "GET": (
        "A GraphQL query by GET, or the GraphiQL page",
        _GET_RESPONSES,
        {"parameters": _QUERY_PARAMETERS, **_SECURITY},
    ),
    "POST": (
        "A GraphQL query (CONTRACT §5): `kpis`, `kpiCatalog`",
        _POST_RESPONSES,
        {"requestBody": _POST_BODY, **_SECURITY},
    ),
}


def _describe(graphql: GraphQLRouter[object, None]) -> None:
    """The OpenAPI document says what ``/graphql`` takes and answers, refusals too
    (Strawberry's routes say only 200)."""
    for route in graphql.routes:
        if isinstance(route, APIRoute) and route.path == "/graphql":
            [method] = (route.methods or set()) & {"GET", "POST"}
            summary, responses, extra = _DESCRIBED[method]
            route.summary = summary
            route.responses = responses
            route.openapi_extra = extra


def mount_graphql(app: FastAPI) -> None:
    """``/graphql``, with remembered answers that are still current sent first."""
    graphql = Router(schema, path="/graphql", context_getter=get_context, graphql_ide="graphiql")
    _describe(graphql)
    app.include_router(graphql)
    # Ahead of every route: dashboards' queries are most of the traffic.
    app.router.routes.insert(0, Route("/graphql", RememberedGraphql(graphql), methods=["POST"]))
    app.router.routes.insert(1, Route("/graphql", GraphqlOverGet(graphql), methods=["GET"]))
