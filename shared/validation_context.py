"""Telling new input from events read back, for the rules that apply to new input only.

Events read back (from the outbox, the broker or the facts) were accepted once under
the rules of their day: they are read as they are, never refused by a rule added
since, which would lose them or fail whatever reads them.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationInfo

# The context to validate an event read back with.
STORED: dict[str, Any] = {"stored": True}


def accepting(info: ValidationInfo | None) -> bool:
    """Whether this validation is of new input, to which every rule applies."""
    return not (info is not None and isinstance(info.context, dict) and info.context.get("stored"))
