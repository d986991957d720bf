"""The depth and alias limits of a GraphQL document, as validation rules that measure
each fragment once.

Strawberry's limiters walk a fragment again at every spread of it: twenty fragments
each spreading the one before twice made an 800-byte document that held the gateway's
event loop for 19 s (doubling with each fragment), before any token was checked. Here
a fragment's measure is remembered, so a document costs what its text does. They count
as Strawberry's did: a field with a selection is one level (introspection fields none),
and an alias counts once for each time its fragment is spread.

A document within those limits could still spread out to millions of fields, which
the execution walks (Strawberry's selected fields, our row-size check): the number of
fields once every spread is written out is limited too.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    ValidationContext,
    ValidationRule,
)
from strawberry.extensions import ValidationCache

SelectionMeasure = Callable[[SelectionSetNode | None], int]
# Fields of one response key in one selection: they merge, so no query needs many.
MAX_REPEATED_KEY = 20


class _Measured:
    """Sums or maxima over a document's selections, each fragment's measured once.

    An unknown fragment or one in a cycle measures 0: graphql-core's own rules
    refuse those documents with their reasons."""

    def __init__(
        self,
        context: ValidationContext,
        of_field: Callable[[FieldNode, SelectionMeasure], int],
        combine: Callable[[list[int]], int],
    ) -> None:
        self.fragments = {
            definition.name.value: definition
            for definition in context.document.definitions
            if isinstance(definition, FragmentDefinitionNode)
        }
        self.of_field = of_field
        self.combine = combine
        self.known: dict[str, int] = {}
        self.open: set[str] = set()

    def selection(self, selection_set: SelectionSetNode | None) -> int:
        if selection_set is None:
            return 0
        measures = []
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                measures.append(self.of_field(selection, self.selection))
            elif isinstance(selection, InlineFragmentNode):
                measures.append(self.selection(selection.selection_set))
            elif isinstance(selection, FragmentSpreadNode):
                measures.append(self.fragment(selection.name.value))
        return self.combine(measures)

    def fragment(self, name: str) -> int:
        if name in self.known:
            return self.known[name]
        fragment = self.fragments.get(name)
        if fragment is None or name in self.open:
            return 0
        self.open.add(name)
        measured = self.known[name] = self.selection(fragment.selection_set)
        self.open.discard(name)
        return measured


def _operations(context: ValidationContext) -> list[OperationDefinitionNode]:
    return [d for d in context.document.definitions if isinstance(d, OperationDefinitionNode)]


def _summed_over_document(
    context: ValidationContext, of_field: Callable[[FieldNode, SelectionMeasure], int]
) -> int:
    """``of_field`` summed over every operation of the document, spreads written out."""
    measured = _Measured(context, of_field, sum)
    return sum(measured.selection(o.selection_set) for o in _operations(context))


def depth_limit(max_depth: int) -> type[ValidationRule]:
    def of_field(field: FieldNode, selection: SelectionMeasure) -> int:
        if field.name.value.startswith("__") or field.selection_set is None:
            return 0
        return 1 + selection(field.selection_set)

    class DepthLimit(ValidationRule):
        def __init__(self, context: ValidationContext) -> None:
            super().__init__(context)
            measured = _Measured(context, of_field, lambda depths: max(depths, default=0))
            for operation in _operations(context):
                if measured.selection(operation.selection_set) > max_depth:
                    name = operation.name.value if operation.name else "anonymous"
                    context.report_error(
                        GraphQLError(
                            f"'{name}' exceeds maximum operation depth of {max_depth}",
                            [operation],
                        )
                    )

    return DepthLimit


def alias_limit(max_aliases: int) -> type[ValidationRule]:
    def of_field(field: FieldNode, selection: SelectionMeasure) -> int:
        return (1 if field.alias else 0) + selection(field.selection_set)

    class AliasLimit(ValidationRule):
        def __init__(self, context: ValidationContext) -> None:
            super().__init__(context)
            aliases = _summed_over_document(context, of_field)
            if aliases > max_aliases:
                context.report_error(
                    GraphQLError(f"{aliases} aliases found. Allowed: {max_aliases}")
                )

    return AliasLimit


def spread_limit(max_fields: int) -> type[ValidationRule]:
    def of_field(field: FieldNode, selection: SelectionMeasure) -> int:
        return 1 + selection(field.selection_set)

    class SpreadLimit(ValidationRule):
        def __init__(self, context: ValidationContext) -> None:
            super().__init__(context)
            fields = _summed_over_document(context, of_field)
            if fields > max_fields:
                context.report_error(
                    GraphQLError(
                        f"the query spreads out to {fields:,} fields once its fragments are "
                        f"written out; at most {max_fields:,}"
                    )
                )

    return SpreadLimit


def most_repeated_key(document: DocumentNode) -> tuple[str, int] | None:
    """The response key asked for most often in one selection, once its inline
    fragments and fragment spreads are collected as GraphQL merges them (each fragment
    once), and how often; None for a document that asks for nothing."""
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    known: dict[str, Counter[str]] = {}
    open_fragments: set[str] = set()

    def collected(selection_set: SelectionSetNode, spread: set[str]) -> Counter[str]:
        keys: Counter[str] = Counter()
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                keys[(selection.alias or selection.name).value] += 1
            elif isinstance(selection, InlineFragmentNode):
                keys.update(collected(selection.selection_set, spread))
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                if name not in spread:
                    spread.add(name)
                    keys.update(fragment(name))
        return keys

    def fragment(name: str) -> Counter[str]:
        if name not in known:
            definition = fragments.get(name)
            if definition is None or name in open_fragments:
                return Counter()
            open_fragments.add(name)
            known[name] = collected(definition.selection_set, {name})
            open_fragments.discard(name)
        return known[name]

    most: tuple[str, int] | None = None
    for node in _selection_sets(document):
        for key, times in collected(node, set()).most_common(1):
            if most is None or times > most[1]:
                most = (key, times)
    return most


def _selection_sets(document: DocumentNode) -> Iterator[SelectionSetNode]:
    pending: list[SelectionSetNode] = [
        d.selection_set
        for d in document.definitions
        if isinstance(d, OperationDefinitionNode | FragmentDefinitionNode)
    ]
    while pending:
        selection_set = pending.pop()
        yield selection_set
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode | InlineFragmentNode) and selection.selection_set:
                pending.append(selection.selection_set)


class BoundedValidation(ValidationCache):
    """Strawberry's validation cache, after a check graphql-core's own rules need first:
    they compare every two fields of one key in a selection (to see they merge), so 480
    of them held the event loop a second. A selection may ask for one key at most
    ``MAX_REPEATED_KEY`` times, which no query needs (they merge into one)."""

    def on_validate(self) -> Iterator[None]:
        document = self.execution_context.graphql_document
        repeated = most_repeated_key(document) if document is not None else None
        if repeated is not None and repeated[1] > MAX_REPEATED_KEY:
            key, times = repeated
            self.execution_context.pre_execution_errors = [
                GraphQLError(
                    f"one selection asks for {key} {times} times; at most "
                    f"{MAX_REPEATED_KEY} (fields of one name merge into one: ask once)"
                )
            ]
            yield
            return
        yield from super().on_validate()
