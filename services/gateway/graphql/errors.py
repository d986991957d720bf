"""GraphQL errors carry the REST error code in ``extensions.code`` (CONTRACT §2)."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from typing import Any

from graphql import (
    SKIP,
    ArgumentNode,
    GraphQLInputType,
    ListValueNode,
    ObjectFieldNode,
    ObjectValueNode,
    UniqueInputFieldNamesRule,
    ValidationContext,
    ValueNode,
    ValuesOfCorrectTypeRule,
    VariableDefinitionNode,
    VisitorAction,
)
from graphql.error import GraphQLError
from graphql.utilities.validate_input_value import validate_input_literal
from strawberry.extensions import SchemaExtension

from shared.errors import LodestarError
from shared.service import transient_failure
from shared.telemetry import current_trace_id

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


# graphql-core's words for a variable's bad value: "Variable '$input' has invalid value
# at .filters.skus[0]: String cannot ...", or "... of required type ... was not provided".
_VARIABLE_ERROR = re.compile(
    r"^Variable '\$(?P<name>\w+)' "
    r"(?:(?P<invalid>has invalid value(?: at (?P<path>[^:\s]+))?: )|(?=of required type))"
)


# graphql-core names an input object left without a required field, or given one it
# does not have, by the object's path, and the field only in its words: "Expected value
# of type 'KpiQueryInput' to include required field 'to', found: ...", "... not to
# include unknown field 'store'".
_FIELD_IN_WORDS = re.compile(
    r"^Expected value of type '[^']+' (?:to include required|not to include unknown) "
    r"field '(\w+)'"
)


_PYTHON_NONE = re.compile(r"not to be None\.$")


def _field_named(path: str, reason: str) -> str:
    """The input field an error is about: ``path``, or the field under it that was left
    out or is unknown (a misspelt ``store`` for ``stores``)."""
    named = _FIELD_IN_WORDS.match(reason)
    if named is None:
        return path
    return f"{path}.{named[1]}" if path else named[1]


def _value_at(node: ValueNode, path: list[str | int]) -> ValueNode:
    """The value written at ``path`` (field names and list positions) inside ``node``,
    or the deepest one there is."""
    for step in path:
        if isinstance(node, ObjectValueNode) and isinstance(step, str):
            found = [field.value for field in node.fields if field.name.value == step]
            if not found:
                break
            node = found[0]
        elif isinstance(node, ListValueNode) and isinstance(step, int) and step < len(node.values):
            node = node.values[step]
        else:
            break
    return node


class NamedValuesOfCorrectType(ValuesOfCorrectTypeRule):
    """graphql-core's check of the values written in a query, naming the field each
    error is about: its own messages name only a type ("Value cannot represent a
    Date"), and a client needs to know which argument to fix."""

    def __init__(self, context: ValidationContext) -> None:
        super().__init__(context)
        self._argument = ""

    def enter_argument(self, node: ArgumentNode, *_: Any) -> None:
        self._argument = node.name.value

    def leave_argument(self, *_: Any) -> None:
        self._argument = ""

    # A variable's default value is named by the variable, as a bad value passed for
    # it in ``variables`` is.
    def enter_variable_definition(self, node: VariableDefinitionNode, *_: Any) -> None:
        self._argument = node.variable.name.value

    def leave_variable_definition(self, *_: Any) -> None:
        self._argument = ""

    def is_valid_value_node(
        self, node: ValueNode, input_type: GraphQLInputType | None
    ) -> VisitorAction:
        # As graphql-core 3.3 does it, with the path it hands to on_error kept.
        if input_type:

            def report(error: GraphQLError, path: list[str | int]) -> None:
                # A scalar's own error comes without the value it is about (a Date
                # that is none), or about a copy of it that has no place in the query
                # (a list given for a String): located at the value written, as every
                # other value error is.
                located = [n for n in error.nodes or [] if n.loc is not None]
                self._report(error, path, located or [_value_at(node, path)])

            validate_input_literal(
                node, input_type, report, None, None, self.context.hide_suggestions
            )
        return SKIP

    def _report(self, error: GraphQLError, path: list[str | int], nodes: list[Any] | None) -> None:
        # graphql-core writes the null a document holds as Python's None (and only in
        # this phrase: a caller's own word None, an enum value or a text, stays so).
        reason = _PYTHON_NONE.sub("not to be null.", error.message)
        field = _field_named(
            (
                self._argument
                + "".join(f"[{step}]" if isinstance(step, int) else f".{step}" for step in path)
            ).lstrip("."),
            reason,
        )
        self.report_error(
            GraphQLError(
                f"{field}: {reason}" if field else reason,
                nodes=nodes,
                extensions={"errors": [{"field": field, "reason": reason}]},
            )
        )


class NamedUniqueInputFieldNames(UniqueInputFieldNamesRule):
    """graphql-core's check that an input object names each field once, naming the
    field written twice by its path (``input.grain``), as value errors are."""

    def __init__(self, context: ValidationContext) -> None:
        super().__init__(context)
        self._path: list[str] = []

    def enter_argument(self, node: ArgumentNode, *_: Any) -> None:
        self._path = [node.name.value]

    def enter_variable_definition(self, node: VariableDefinitionNode, *_: Any) -> None:
        self._path = [node.variable.name.value]

    def enter_object_field(self, node: ObjectFieldNode, *_: Any) -> None:
        name = node.name.value
        if name in self.known_names:
            field = ".".join([*self._path, name])
            reason = f"There can be only one input field named '{name}'."
            self.report_error(
                GraphQLError(
                    f"{field}: {reason}",
                    [self.known_names[name], node.name],
                    extensions={"errors": [{"field": field, "reason": reason}]},
                )
            )
        else:
            self.known_names[name] = node.name
        self._path.append(name)

    def leave_object_field(self, *_: Any) -> None:
        self._path.pop()


# The same class every time, so that validated documents stay cached.
_NAMED_RULES = {
    ValuesOfCorrectTypeRule: NamedValuesOfCorrectType,
    UniqueInputFieldNamesRule: NamedUniqueInputFieldNames,
}


class NamedValueErrors(SchemaExtension):
    """Puts the rules above in place of graphql-core's own."""

    def on_operation(self) -> Iterator[None]:
        context = self.execution_context
        context.validation_rules = tuple(
            _NAMED_RULES.get(rule, rule) for rule in context.validation_rules
        )
        yield


TOO_LARGE = "is too large a number"
# graphql-core's words for a value read as infinity, or past a 32-bit integer.
_BEYOND_DOUBLES = re.compile(
    r"^(?:Int|Float) cannot represent .*value: (?:-?inf|-?[0-9.]+e\+[0-9]+|-?[0-9]{10,})$"
)

# graphql-core's words for an argument given twice.
_ARGUMENT_TWICE = re.compile(r"^There can be only one argument named '(\w+)'\.")


def _field_errors(message: str) -> list[dict[str, str]] | None:
    """CONTRACT §2's field list for a variable's bad value, or an argument given twice,
    from graphql-core's message."""
    if twice := _ARGUMENT_TWICE.match(message):
        return [{"field": twice[1], "reason": message}]
    match = _VARIABLE_ERROR.match(message)
    if match is None:
        return None
    reason = message[match.end() :] if match["invalid"] else message
    if _BEYOND_DOUBLES.search(reason):
        # A number beyond a double (or of 4,300 digits) is read as infinity: the
        # caller sent no "inf", and an integer is no "non-integer".
        reason = TOO_LARGE
    return [
        {"field": _field_named(match["name"] + (match["path"] or ""), reason), "reason": reason}
    ]


def coded(error: GraphQLError) -> GraphQLError:
    original = error.original_error
    if original is not None and not isinstance(original, LodestarError):
        original = transient_failure(original) or original
    if isinstance(original, LodestarError):
        return _with_code(error, original.detail, original.graphql_extensions())
    if original is not None and not isinstance(original, GraphQLError):
        # A fault of ours: logged with its trace, never shown to the caller.
        log.error("graphql resolver failed", exc_info=original)
        # The trace that finds the log, as a REST 500 names it.
        trace_id = current_trace_id()
        traced = {"traceId": trace_id} if trace_id else {}
        return _with_code(error, "internal error", {"code": "INTERNAL", **traced})
    # Parse and validation errors: the query itself is wrong (Schema.process_errors may
    # have said so already).
    extensions = {"code": "BAD_USER_INPUT", **(error.extensions or {})}
    # A variable's null, as a literal's (see _report).
    message = _PYTHON_NONE.sub("not to be null.", error.message)
    if (
        extensions["code"] == "BAD_USER_INPUT"
        and "errors" not in extensions
        and (fields := _field_errors(message))
    ):
        extensions["errors"] = fields
        if fields[0]["reason"] == TOO_LARGE:
            # Said as the field list says it: the caller sent no "inf".
            message = f"{fields[0]['field']}: {TOO_LARGE}"
    if extensions == error.extensions and message == error.message:
        return error
    return _with_code(error, message, extensions)


class ErrorCodes(SchemaExtension):
    def on_operation(self) -> Iterator[None]:
        yield
        result = self.execution_context.result
        if result is not None and getattr(result, "errors", None):
            result.errors = [coded(e) for e in result.errors or []]
