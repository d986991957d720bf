"""Lists in one query parameter: quoted values whole, the quoted empty value kept."""

from __future__ import annotations

import pytest

from shared.errors import InvalidInput
from shared.query_lists import AFTER_QUOTE, UNCLOSED_QUOTE, join_list, split_list


@pytest.mark.parametrize(
    ("parameter", "values"),
    [
        ("US,MX", ["US", "MX"]),
        (" US , MX ", ["US", "MX"]),
        ("US,,MX,", ["US", "MX"]),
        ("", []),
        (None, []),
        ('"Lamps, Indoor",Outdoor', ["Lamps, Indoor", "Outdoor"]),
        ('"BULB ""2"",X"', ['BULB "2",X']),
        ('""', [""]),
        ('"",Bulbs', ["", "Bulbs"]),
        ('Bulbs, ""', ["Bulbs", ""]),
        ('a"b', ['a"b']),
        # Trimmed as events' identifiers are: a separator (U+001C) is part of the store.
        ("\x1cS, \u3000T\u3000", ["\x1cS", "T"]),
        ('"\x1fS"', ["\x1fS"]),
    ],
)
def test_a_parameter_reads_as_its_values(parameter: str | None, values: list[str]) -> None:
    assert split_list(parameter, "categories") == values


@pytest.mark.parametrize(
    "values",
    [
        ["US", "MX"],
        [""],
        ["", "X"],
        ["X", ""],
        ["Lamps, Indoor"],
        ['BULB "2",X'],
        ['"quoted"'],
        ['a"b'],
        ["\x1cS", "\x1d"],
    ],
)
def test_joined_values_read_back_the_same(values: list[str]) -> None:
    assert split_list(join_list(values), "skus") == values


@pytest.mark.parametrize(
    ("parameter", "reason"),
    [('"Lamps, Indoor', UNCLOSED_QUOTE), ('"Lamps" Indoor,X', AFTER_QUOTE), ('"a"b', AFTER_QUOTE)],
)
def test_a_malformed_quote_is_refused_naming_the_parameter(parameter: str, reason: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        split_list(parameter, "categories")
    assert [(e.field, e.reason) for e in refused.value.errors] == [("categories", reason)]
