"""Answers kept until the tenant's data changes.

Every transaction that applies facts bumps the tenant's data version in the same
commit, so an answer cached under (query, data version, settings, day) can never be
older than the data it was computed from, on any replica: each replica reads the
version from the database before it looks in its own memory.
"""

from __future__ import annotations

from collections import OrderedDict
from datetime import date
from typing import Any

import asyncpg

from services.metrics.kpis.query import KpiQuery

MAX_ANSWERS = 256


def answer_key(query: KpiQuery, version: int, settings_stamp: str) -> str:
    # "Late" shipments depend on today, so the key does too.
    return f"{version}|{settings_stamp}|{date.today().isoformat()}|{query!r}"


async def bump_versions(conn: asyncpg.Connection, tenant_ids: set[str]) -> None:
    """Marks these tenants' data changed; runs in the transaction that changed it."""
    if not tenant_ids:
        return
    await conn.execute(
        """
        INSERT INTO tenant_data_versions AS v (tenant_id, version)
        SELECT unnest($1::text[]), 1
        ON CONFLICT (tenant_id) DO UPDATE SET version = v.version + 1
        """,
        sorted(tenant_ids),
    )


class AnswerCache:
    """The most recently used answers of this process, at most ``capacity``."""

    def __init__(self, capacity: int = MAX_ANSWERS) -> None:
        self.capacity = capacity
        self._answers: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> dict[str, Any] | None:
        found = self._answers.get(key)
        if found is None:
            self.misses += 1
            return None
        self._answers.move_to_end(key)
        self.hits += 1
        return found

    def put(self, key: str, answer: dict[str, Any]) -> None:
        self._answers[key] = answer
        self._answers.move_to_end(key)
        while len(self._answers) > self.capacity:
            self._answers.popitem(last=False)


# This process's answers; every query of the metrics service goes through it.
ANSWERS = AnswerCache()
