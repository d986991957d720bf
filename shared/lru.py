"""A bounded map that forgets the least recently used entry first."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class Lru(Generic[K, V]):
    """At most ``capacity`` entries and, when ``weigh`` is given, at most ``max_weight``
    of their weight: a value heavier than that alone is not kept. Counts its hits and
    misses for tests and benchmarks."""

    def __init__(
        self,
        capacity: int,
        weigh: Callable[[V], int] | None = None,
        max_weight: int | None = None,
    ) -> None:
        self.capacity = capacity
        self._entries: OrderedDict[K, V] = OrderedDict()
        self._weigh = weigh
        self._weights: dict[K, int] = {}
        self.max_weight = max_weight
        self.weight = 0
        self.hits = 0
        self.misses = 0

    def get(self, key: K) -> V | None:
        found = self._entries.get(key)
        if found is None:
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return found

    def __contains__(self, key: object) -> bool:
        """Whether ``key`` is held, without counting a hit or refreshing it."""
        return key in self._entries

    def put(self, key: K, value: V) -> None:
        self.pop(key)
        weight = self._weigh(value) if self._weigh is not None else 0
        if self.max_weight is not None and weight > self.max_weight:
            return
        self._entries[key] = value
        self._weights[key] = weight
        self.weight += weight
        while len(self._entries) > self.capacity or (
            self.max_weight is not None and self.weight > self.max_weight
        ):
            self.pop(next(iter(self._entries)))

    def clear(self) -> None:
        self._entries.clear()
        self._weights.clear()
        self.weight = 0

    def pop(self, key: K) -> None:
        self._entries.pop(key, None)
        self.weight -= self._weights.pop(key, 0)
