"""Turns kept per key (a client, a tenant): how many of a key's requests may do a dear
thing at once, the rest waiting for one of its turns before any turn of the process."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class KeyedTurns:
    """``per_key`` turns for each key; a key is remembered only while a request holds
    or waits for one of its turns."""

    def __init__(self, per_key: int) -> None:
        self.per_key = per_key
        self._by_key: dict[str, tuple[asyncio.Semaphore, int]] = {}

    @asynccontextmanager
    async def of(self, key: str) -> AsyncIterator[asyncio.Semaphore]:
        """The key's turns, for the caller to take one of."""
        own, waiting = self._by_key.get(key, (None, 0))
        if own is None:
            own = asyncio.Semaphore(self.per_key)
        self._by_key[key] = (own, waiting + 1)
        try:
            yield own
        finally:
            own, waiting = self._by_key[key]
            if waiting > 1:
                self._by_key[key] = (own, waiting - 1)
            else:
                del self._by_key[key]
