"""One trimming rule: what an event's text loses is what every other reader takes off."""

from __future__ import annotations

import sys

from pydantic import TypeAdapter

from shared.events import Text
from shared.text import trimmed

EVENT_TEXT = TypeAdapter(Text)


def test_identifiers_are_trimmed_as_events_trim_them() -> None:
    # Python's own idea of space, and the zero-width characters that are not space.
    candidates = [chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace()]
    candidates += ["\u180e", "\u200b", "\u2060", "\ufeff"]
    for character in candidates:
        padded = f"{character}S{character}"
        assert trimmed(padded) == EVENT_TEXT.validate_python(padded), hex(ord(character))
    assert trimmed("\x1cS") == "\x1cS"
