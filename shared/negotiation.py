"""Reading the weighted lists of content negotiation (RFC 9110 §12.4): ``Accept`` and
``Accept-Encoding``, and the other list headers (``If-None-Match``)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from starlette.datastructures import Headers, MutableHeaders


@dataclass(frozen=True)
class WeightedItem:
    """One element of a weighted list: a media range or a content coding."""

    name: str  # lower case
    parameters: dict[str, str]  # names lower case, values unquoted
    text: str  # as the header wrote it

    @property
    def quality(self) -> float:
        """RFC 9110 §12.4.2: a weight from 0 to 1; one that is none (``q=abc``, ``q=1.5``)
        is read as the nearest there is, or as no weight at all."""
        try:
            weight = float(self.parameters.get("q", "1"))
        except ValueError:
            return 1.0
        return min(max(weight, 0.0), 1.0) if math.isfinite(weight) else 1.0


def list_header(headers: Headers, name: str) -> str:
    """A list header as one value: RFC 9110 §5.3, a header sent on several lines is
    the one list their values make (Java and Node clients, and proxies, split them)."""
    return ", ".join(headers.getlist(name))


def weighted_items(header: str) -> list[WeightedItem]:
    """The elements of a weighted list; RFC 9110 §5.6.1: empty list elements count for
    nothing."""
    items = []
    for part in header.split(","):
        if not part.strip():
            continue
        name, *options = [item.strip() for item in part.split(";")]
        parameters = {}
        for option in options:
            key, _, value = option.partition("=")
            parameters[key.strip().lower()] = value.strip().strip('"')
        items.append(WeightedItem(name.lower(), parameters, part))
    return items


def coding_quality(accept_encoding: str, names: Iterable[str]) -> float:
    """How much ``Accept-Encoding`` wants a coding known by any of ``names`` (RFC 9110
    §12.5.3): its own weight when the header names it, else that of ``*``, else 0."""
    wanted = set(names)
    named = [item.quality for item in weighted_items(accept_encoding) if item.name in wanted]
    if named:
        return max(named)
    anything = [item.quality for item in weighted_items(accept_encoding) if item.name == "*"]
    return max(anything, default=0.0)


def vary_on(headers: MutableHeaders, name: str) -> None:
    """Adds ``name`` to ``Vary`` unless it is there already (in any case)."""
    if name.lower() not in {token.strip().lower() for token in headers.get("vary", "").split(",")}:
        headers.add_vary_header(name)
