"""The one rule for trimming what a client names (stores, SKUs, categories, warehouses):
the same in a JSON event, a CSV cell, a query's list, a grant, a user's limits and a
path, so that a value is one value wherever it is read."""

from __future__ import annotations

# Unicode's White_Space characters: what pydantic's ``strip_whitespace`` takes off a
# JSON event's text. Python's ``str.strip()`` also takes U+001C to U+001F (the
# separators), so a store pushed as "\x1cS" was read back by a filter or a grant as the
# other store "S".
WHITE_SPACE = (
    "\t\n\x0b\x0c\r \x85\xa0\u1680"
    + "".join(map(chr, range(0x2000, 0x200B)))
    + "\u2028\u2029\u202f\u205f\u3000"
)


def trimmed(text: str) -> str:
    """``text`` without the white space around it, as an event's identifiers are read."""
    return text.strip(WHITE_SPACE)


def visible(text: str) -> str:
    """``text`` as a message shows it: a character that prints nothing (a control, a
    zero-width space, a byte order mark) as ``U+XXXX``, so the reader can see it."""
    return "".join(c if c.isprintable() else f"U+{ord(c):04X}" for c in text)
