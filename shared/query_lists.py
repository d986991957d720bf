"""Lists in one query parameter, as CONTRACT §6 writes them: ``marketplaces=US,MX``.

A value that holds a comma (a category "Lamps, Indoor") or starts with a double quote
is quoted as in CSV: ``categories="Lamps, Indoor",Outdoor``. A quoted empty value is
the empty one, which the answers show for a line without a category or a fee without
a SKU (``categories=""``); a blank left unquoted (``US,,MX``, a trailing comma) names
nothing. The gateway writes the lists of a GraphQL query this way, so every value
reaches metrics whole.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterable

from pydantic import BeforeValidator

from shared.errors import FieldError, InvalidInput
from shared.text import trimmed

UNCLOSED_QUOTE = 'a value opened with " is not closed; write "a, b" for a value with a comma'
AFTER_QUOTE = 'a quoted value goes on to its closing " and then a comma: "a, b",c'
QUOTE = '"'


WHOLE_NUMBER_REASON = "must be a whole number written in digits (100, not 100.0 or +100)"
_DIGITS = re.compile(r"[0-9]{1,18}")


def _written_in_digits(value: object) -> object:
    # A parameter is text: the lenient integer parser read "2026.0", "+2026" and "2_026"
    # as 2026, where the KPI routes' whole numbers refuse them.
    if isinstance(value, str) and not _DIGITS.fullmatch(value):
        raise ValueError(WHOLE_NUMBER_REASON)
    return value


# A whole-number query parameter written as digits only: ``Annotated[int, Ge(1), Le(500),
# DIGITS_ONLY, Query()]``. Its bounds go before it, on the int itself, so that OpenAPI
# names them ``minimum`` and ``maximum``: after a validator, pydantic writes them as
# given (``ge``, ``le``), which no JSON Schema reader knows.
DIGITS_ONLY = BeforeValidator(_written_in_digits)


def split_list(value: str | None, field: str) -> list[str]:
    """The values of a comma-separated parameter, unquoted blanks dropped; 422 naming
    ``field`` when a quoted value is not closed or runs on after its closing quote."""
    values: list[str] = []
    position = 0
    while value and position <= len(value):
        start = len(value) - len(value[position:].lstrip(" "))
        if value.startswith(QUOTE, start):
            quoted, position = _quoted(value, start + 1, field)
            values.append(trimmed(quoted))
        else:
            position = value.find(",", start)
            position = len(value) if position == -1 else position
            if item := trimmed(value[start:position]):
                values.append(item)
        position += 1  # past the comma
    return values


def _quoted(value: str, start: int, field: str) -> tuple[str, int]:
    """The quoted value from ``start`` (after its opening quote, ``""`` standing for one
    quote) and the position of the comma after it, or the end."""
    parts: list[str] = []
    position = start
    while True:
        closing = value.find(QUOTE, position)
        if closing == -1:
            raise InvalidInput(f"{field}: {UNCLOSED_QUOTE}", [FieldError(field, UNCLOSED_QUOTE)])
        parts.append(value[position:closing])
        if value.startswith(QUOTE, closing + 1):
            parts.append(QUOTE)
            position = closing + 2
            continue
        after = len(value) - len(value[closing + 1 :].lstrip(" "))
        if after < len(value) and value[after] != ",":
            raise InvalidInput(f"{field}: {AFTER_QUOTE}", [FieldError(field, AFTER_QUOTE)])
        return "".join(parts), after


def join_list(values: Iterable[str]) -> str:
    """The parameter that :func:`split_list` reads back as ``values``."""
    return ",".join(_quote(value) if _needs_quotes(value) else value for value in values)


def _needs_quotes(value: str) -> bool:
    return not trimmed(value) or "," in value or value.lstrip(" ").startswith(QUOTE)


def _quote(value: str) -> str:
    return QUOTE + value.replace(QUOTE, QUOTE * 2) + QUOTE


# Codes (currencies, marketplaces, grains, dimensions) are ASCII: str.upper() would make
# one of other letters ("ßp" reads SSP, a dotless i reads I).
_ASCII_UPPER = str.maketrans(string.ascii_lowercase, string.ascii_uppercase)
_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


def code_upper(text: str) -> str:
    """``text`` with its ASCII letters in upper case, any other character as it is."""
    return text.translate(_ASCII_UPPER)


def code_lower(text: str) -> str:
    """``text`` with its ASCII letters in lower case, any other character as it is."""
    return text.translate(_ASCII_LOWER)
