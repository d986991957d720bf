"""Answers kept until the tenant's data changes.

Every transaction that applies facts bumps the tenant's data version in the same
commit, so an answer cached under (query, data version, settings, day) can never be
older than the data it was computed from, on any replica: each replica reads the
version from the database before it looks in its own memory.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import asyncpg

from services.metrics.fx.rates import RateBook
from services.metrics.kpis.query import KpiQuery
from shared.lru import Lru

MAX_ANSWERS = 256
MAX_RATE_BOOKS = 64


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


class AnswerCache(Lru[str, dict[str, Any]]):
    """The most recently used answers of this process."""

    def __init__(self, capacity: int = MAX_ANSWERS) -> None:
        super().__init__(capacity)


# This process's answers; every query of the metrics service goes through it.
ANSWERS = AnswerCache()


class RateBooks(Lru[tuple[str, int], RateBook]):
    """Each tenant's FX rates at a data version: fx_rate events bump it like any other
    fact, and reading and sorting years of daily rates was a quarter of a first ask."""

    def __init__(self, capacity: int = MAX_RATE_BOOKS) -> None:
        super().__init__(capacity)


RATE_BOOKS = RateBooks()
