"""The gateway's GraphQL schema, assembled from the domain modules."""

from __future__ import annotations

from typing import Any

import orjson
import strawberry
from fastapi import FastAPI
from graphql.error import GraphQLError
from starlette.routing import Route
from strawberry.extensions import (
    AddValidationRules,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    ParserCache,
    QueryDepthLimiter,
    ValidationCache,
)
from strawberry.fastapi import GraphQLRouter

from services.gateway.graphql.context import get_context
from services.gateway.graphql.errors import ErrorCodes
from services.gateway.graphql.kpis import KpiQuery
from services.gateway.graphql.revalidation import RememberAnswers, RememberedGraphql

MAX_DEPTH = 8
MAX_ALIASES = 15
MAX_TOKENS = 2000


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


# The depth and alias limits are validation rules. Built once, so every request adds
# the very same rule classes and the validation cache below (keyed by schema, document
# and rules) finds the documents it has already validated; each limiter would otherwise
# make new classes per request and no validation would ever be reused.
LIMIT_RULES = (
    *QueryDepthLimiter(max_depth=MAX_DEPTH).validation_rules,
    *MaxAliasesLimiter(max_alias_count=MAX_ALIASES).validation_rules,
)

schema = Schema(
    query=Query,
    extensions=[
        lambda: AddValidationRules(list(LIMIT_RULES)),
        lambda: MaxTokensLimiter(max_token_count=MAX_TOKENS),
        # Dashboards send the same documents again and again: parse and validate once
        # (strawberry shares the caches between the per-request instances). A document
        # is cached only once it passed the limits above.
        lambda: ParserCache(maxsize=512),
        lambda: ValidationCache(maxsize=512),
        ErrorCodes,
        RememberAnswers,
    ],
)


class Router(GraphQLRouter[object, None]):
    def encode_json(self, data: object) -> bytes:
        return orjson.dumps(data)


def mount_graphql(app: FastAPI) -> None:
    """``/graphql``, with remembered answers that are still current sent first."""
    graphql = Router(schema, path="/graphql", context_getter=get_context, graphql_ide="graphiql")
    app.include_router(graphql)
    # Ahead of every route: dashboards' queries are most of the traffic.
    app.router.routes.insert(0, Route("/graphql", RememberedGraphql(graphql), methods=["POST"]))
