"""What a GraphQL document may ask, measured so that each fragment costs once.

Strawberry's limiters walk a fragment again at every spread of it: twenty fragments
each spreading the one before twice made an 800-byte document that held the gateway's
event loop for 19 s (doubling with each fragment), before any token was checked. Here
a fragment's measure is remembered, so a document costs what its text does.

The depth and alias limits are validation rules, counted as Strawberry's were: a field
with a selection is one level (introspection fields none), and an alias counts once for
each time its fragment is spread. Before any rule runs, ``BoundedValidation`` refuses a
document graphql-core's own rules would take too long over: one that spreads out to too
many fields, or asks for one key too often in a selection.
"""

from __future__ import annotations

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
# No more fields, once fragments are spread out, than a document could write out (each
# fragment's own definition counted too, since graphql-core checks it whether used or not).
MAX_SPREAD_FIELDS = 2000


class _Measured:
    """Sums or maxima over a document's selections, each fragment's measured once.

    An unknown fragment or one in a cycle measures 0: graphql-core's own rules
    refuse those documents with their reasons."""

    def __init__(
        self,
        document: DocumentNode,
        of_field: Callable[[FieldNode, SelectionMeasure], int],
        combine: Callable[[list[int]], int],
    ) -> None:
        self.fragments = _fragments(document)
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


def _fragments(document: DocumentNode) -> dict[str, FragmentDefinitionNode]:
    return {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}


def _operations(document: DocumentNode) -> list[OperationDefinitionNode]:
    return [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]


def _summed_over(
    document: DocumentNode,
    of_field: Callable[[FieldNode, SelectionMeasure], int],
    with_fragments: bool = False,
) -> int:
    """``of_field`` summed over every operation of the document, spreads written out,
    and ``with_fragments``, over every fragment's own definition too."""
    measured = _Measured(document, of_field, sum)
    total = sum(measured.selection(o.selection_set) for o in _operations(document))
    if with_fragments:
        total += sum(measured.fragment(name) for name in measured.fragments)
    return total


def _field_and_inner(field: FieldNode, selection: SelectionMeasure) -> int:
    return 1 + selection(field.selection_set)


def depth_limit(max_depth: int) -> type[ValidationRule]:
    def of_field(field: FieldNode, selection: SelectionMeasure) -> int:
        if field.name.value.startswith("__") or field.selection_set is None:
            return 0
        return 1 + selection(field.selection_set)

    class DepthLimit(ValidationRule):
        def __init__(self, context: ValidationContext) -> None:
            super().__init__(context)
            measured = _Measured(context.document, of_field, lambda depths: max(depths, default=0))
            for operation in _operations(context.document):
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
            aliases = _summed_over(context.document, of_field)
            if aliases > max_aliases:
                context.report_error(
                    GraphQLError(f"{aliases} aliases found. Allowed: {max_aliases}")
                )

    return AliasLimit


def most_repeated_key(document: DocumentNode) -> tuple[str, int] | None:
    """The response key asked for most often in one selection, and how often; None for
    a document that asks for nothing. Counted as GraphQL merges fields: a selection's
    inline fragments and fragment spreads (each fragment once) are collected into it,
    and the fields of one key in a selection merge, so their sub-selections are one
    (20 ``types`` each asking ``ofType`` 20 times ask it 400 times in one).

    Call it on a document that spreads out to few fields (``MAX_SPREAD_FIELDS``): each
    field is visited once for every place a spread brings it."""
    fragments = _fragments(document)
    most: tuple[str, int] | None = None

    def collect(
        selection_set: SelectionSetNode, into: dict[str, list[FieldNode]], spread: set[str]
    ) -> None:
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                into.setdefault((selection.alias or selection.name).value, []).append(selection)
            elif isinstance(selection, InlineFragmentNode):
                collect(selection.selection_set, into, spread)
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                fragment = fragments.get(name)
                if fragment is not None and name not in spread:
                    spread.add(name)
                    collect(fragment.selection_set, into, spread)

    pending: list[list[SelectionSetNode]] = [
        [d.selection_set]
        for d in document.definitions
        if isinstance(d, OperationDefinitionNode | FragmentDefinitionNode)
    ]
    while pending:
        merged: dict[str, list[FieldNode]] = {}
        for selection_set in pending.pop():
            # Each selection's own spreads once; the merged ones are compared all the same.
            collect(selection_set, merged, set())
        for key, fields in merged.items():
            if most is None or len(fields) > most[1]:
                most = (key, len(fields))
            inner = [f.selection_set for f in fields if f.selection_set is not None]
            if inner:
                pending.append(inner)
    return most


class BoundedValidation(ValidationCache):
    """Strawberry's validation cache, after the checks graphql-core's own rules need
    first (``_too_dear_to_check``): they compare every two fields of one key in a
    selection (to see they merge), so 480 of them held the event loop a second, and
    walk every spread written out."""

    def on_validate(self) -> Iterator[None]:
        document = self.execution_context.graphql_document
        refused = _too_dear_to_check(document) if document is not None else None
        if refused is not None:
            self.execution_context.pre_execution_errors = [refused]
            yield
            return
        yield from super().on_validate()


def _too_dear_to_check(document: DocumentNode) -> GraphQLError | None:
    """Why graphql-core's rules would cost too much on ``document``, if they would."""
    fields = _summed_over(document, _field_and_inner, with_fragments=True)
    if fields > MAX_SPREAD_FIELDS:
        return GraphQLError(
            f"the query spreads out to {fields:,} fields once its fragments are written "
            f"out; at most {MAX_SPREAD_FIELDS:,}"
        )
    repeated = most_repeated_key(document)
    if repeated is not None and repeated[1] > MAX_REPEATED_KEY:
        key, times = repeated
        return GraphQLError(
            f"one selection asks for {key} {times} times, fragments and the fields of "
            f"one name merged; at most {MAX_REPEATED_KEY} (fields of one name merge into "
            "one: ask once)"
        )
    return None
