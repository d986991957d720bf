"""GraphQL errors carry the REST error code in ``extensions.code`` (CONTRACT §2)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from graphql.error import GraphQLError
from strawberry.extensions import SchemaExtension

from shared.errors import LodestarError

log = logging.getLogger(__name__)


def _with_code(error: GraphQLError, message: str, extensions: dict[str, Any]) -> GraphQLError:
    return GraphQLError(
        message=message,
        nodes=error.nodes,
        source=error.source,
        positions=error.positions,
        path=error.path,
        original_error=None,
        extensions=extensions,
    )


def coded(error: GraphQLError) -> GraphQLError:
    original = error.original_error
    if isinstance(original, LodestarError):
        extensions: dict[str, Any] = {"code": original.graphql_code, "error": original.code}
        if original.errors:
            extensions["errors"] = [e.as_dict() for e in original.errors]
        return _with_code(error, original.detail, extensions)
    if original is not None and not isinstance(original, GraphQLError):
        # A fault of ours: logged with its trace, never shown to the caller.
        log.error("graphql resolver failed", exc_info=original)
        return _with_code(error, "internal error", {"code": "INTERNAL"})
    if error.extensions and "code" in error.extensions:
        return error
    # Parse and validation errors: the query itself is wrong.
    return _with_code(error, error.message, {**(error.extensions or {}), "code": "BAD_USER_INPUT"})


class ErrorCodes(SchemaExtension):
    def on_operation(self) -> Iterator[None]:
        yield
        result = self.execution_context.result
        if result is not None and getattr(result, "errors", None):
            result.errors = [coded(e) for e in result.errors or []]
