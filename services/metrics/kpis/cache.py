"""Answers kept until the tenant's data changes.

Every transaction that applies facts bumps the tenant's data version in the same
commit, so an answer cached under (query, data version, settings) can never be
older than the data it was computed from, on any replica: each replica reads the
version from the database before it looks in its own memory.

The same key names the answer to clients: its entity tag is a digest of the key and
of the engine's own code, so a client holding a tag learns it is current from one
round trip, without the answer being computed again or kept in any cache.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import asyncpg

from services.metrics.fx.rates import RateBook
from services.metrics.kpis.formulas import FORMULAS
from services.metrics.kpis.query import KpiQuery
from shared.lru import Lru

MAX_ANSWERS = 256
# Rows held in all, about 1 KB each: a few large answers must not take the memory of
# hundreds of dashboards' small ones, nor of the process.
MAX_CACHED_ROWS = 200_000
MAX_TENANT_VERSIONS = 64
MAX_CURRENCY_RANGES = 64


def now_dependent(query: KpiQuery) -> bool:
    """Whether the answer changes with the clock: a shipment not shipped turns late
    when its promised instant passes."""
    return any(
        input_.startswith("shipments_late") for m in query.metrics for input_ in FORMULAS[m].inputs
    )


def answer_key(query: KpiQuery, version: int, settings_stamp: str, moment: str = "") -> str:
    """``moment`` is what besides the data the answer depends on (see ``now_dependent``)."""
    return f"{version}|{settings_stamp}|{moment}|{query!r}"


def key_version(key: str) -> int:
    """The tenant data version an answer's key names (see ``answer_key``)."""
    return int(key.split("|", 1)[0])


def _engine_fingerprint() -> bytes:
    """A digest of the code that turns rollups into answers: a release that computes
    anything differently gives every answer a new tag, and replicas of one release
    agree."""
    digest = hashlib.blake2b(digest_size=16)
    metrics = Path(__file__).resolve().parent.parent
    for package in ("kpis", "fx", "settings"):
        for source in sorted((metrics / package).glob("*.py")):
            digest.update(source.name.encode() + b"\0" + source.read_bytes())
    return digest.digest()


ENGINE_FINGERPRINT = _engine_fingerprint()


def entity_tag(key: str, representation: str) -> str:
    """The strong ETag of the answer cached under ``key``, as JSON or as CSV."""
    digest = hashlib.blake2b(key.encode(), digest_size=16, key=ENGINE_FINGERPRINT)
    return f'"{digest.hexdigest()}-{representation}"'


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


def _rows(answer: dict[str, Any]) -> int:
    return len(answer["rows"])


class AnswerCache(Lru[str, dict[str, Any]]):
    """The most recently used answers of this process, weighed by their rows."""

    def __init__(self, capacity: int = MAX_ANSWERS, max_rows: int = MAX_CACHED_ROWS) -> None:
        super().__init__(capacity, weigh=_rows, max_weight=max_rows)


# This process's answers; every query of the metrics service goes through it.
ANSWERS = AnswerCache()


@dataclass
class TenantVersion:
    """What first asks read once per data version of a tenant and then share: its FX
    rates (fx_rate events bump the version like any other fact; reading and sorting
    years of daily rates was a quarter of a first ask) and the currencies of each date
    range's amounts (a statement every first ask began with, the same whatever its
    filters)."""

    book: RateBook
    currencies: Lru[tuple[date, date], frozenset[str]] = field(
        default_factory=lambda: Lru(MAX_CURRENCY_RANGES)
    )


class TenantVersions(Lru[tuple[str, int], TenantVersion]):
    """By tenant and data version."""

    def __init__(self, capacity: int = MAX_TENANT_VERSIONS) -> None:
        super().__init__(capacity)


TENANT_VERSIONS = TenantVersions()
