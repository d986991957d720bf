"""Lists in one query parameter, as CONTRACT §6 writes them: ``marketplaces=US,MX``.

A value that holds a comma (a category "Lamps, Indoor") or starts with a double quote
is quoted as in CSV: ``categories="Lamps, Indoor",Outdoor``. The gateway writes the
lists of a GraphQL query this way, so every value reaches metrics whole.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable

from shared.errors import FieldError, InvalidInput

UNCLOSED_QUOTE = 'a value opened with " is not closed; write "a, b" for a value with a comma'


def split_list(value: str | None, field: str) -> list[str]:
    """The values of a comma-separated parameter, blanks dropped; 422 naming ``field``
    when a quoted value is not closed."""
    if not value:
        return []
    try:
        rows = list(csv.reader([value], strict=True, skipinitialspace=True))
    except csv.Error:
        error = FieldError(field, UNCLOSED_QUOTE)
        raise InvalidInput(f"{field}: {UNCLOSED_QUOTE}", [error]) from None
    return [item.strip() for row in rows for item in row if item.strip()]


def join_list(values: Iterable[str]) -> str:
    """The parameter that :func:`split_list` reads back as ``values``."""
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(values)
    return out.getvalue().removesuffix("\n")
