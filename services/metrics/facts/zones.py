"""Stores whose local dates follow a time zone of their own (CONTRACT §3).

A store's override changes the local date of every fact it has, history included, so
setting one rebuckets the store: its lines, orders and rollups are rebuilt from the
facts, and its other events' contributions move from the old dates to the new. A batch
applying facts and a rebucketing of the same tenant never interleave: the batch holds a
shared lock on the tenant, the rebucketing an exclusive one. A batch does not wait for
a rebucketing (seconds for a large store): it leaves that tenant's events to be read
again, and applies the other tenants' at once.
"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import orjson

from services.metrics.facts.attachments import attached_keys, move_order_attachments
from services.metrics.facts.measures import Source
from services.metrics.facts.repository import FactRepository, default_zone_sql
from shared.db import row_count
from shared.events import PAYLOAD_MODELS
from shared.validation_context import STORED

StoreZones = dict[tuple[str, str], str]
YIELD_EVERY_ROWS = 1000
# The key of a tenant's lock, of the tenant ``t``.
_TENANT_KEY = "hashtext('metrics.tenant:' || t)"
_LOCK = f"SELECT pg_advisory_xact_lock{{kind}}({_TENANT_KEY}) FROM unnest($1::text[]) t"


async def store_zones_for(conn: asyncpg.Connection, stores: set[tuple[str, str]]) -> StoreZones:
    """The overrides of these (tenant, store) pairs; holds the tenants' shared locks."""
    if not stores:
        return {}
    await conn.execute(_LOCK.format(kind="_shared"), sorted({t for t, _ in stores}))
    rows = await conn.fetch(
        """
        SELECT z.tenant_id, z.store_id, z.timezone FROM store_timezones z
        JOIN unnest($1::text[], $2::text[]) AS s(tenant_id, store_id) USING (tenant_id, store_id)
        """,
        [t for t, _ in stores],
        [s for _, s in stores],
    )
    return {(r["tenant_id"], r["store_id"]): r["timezone"] for r in rows}


async def tenants_rebucketing(conn: asyncpg.Connection, tenants: set[str]) -> frozenset[str]:
    """Of these tenants, those a rebucketing holds now; takes the shared locks of the
    others, without waiting for any."""
    if not tenants:
        return frozenset()
    rows = await conn.fetch(
        "SELECT t FROM unnest($1::text[]) AS t "
        f"WHERE NOT pg_try_advisory_xact_lock_shared({_TENANT_KEY})",
        sorted(tenants),
    )
    return frozenset(row["t"] for row in rows)


async def overrides(conn: asyncpg.Connection, tenant_id: str) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(
        "SELECT store_id, timezone, updated_at FROM store_timezones WHERE tenant_id = $1 "
        "ORDER BY store_id",
        tenant_id,
    )
    return rows


async def set_store_zone(
    conn: asyncpg.Connection, tenant_id: str, store_id: str, timezone: str | None
) -> dict[str, int]:
    """Sets (or, with None, removes) the store's zone and rebuckets its history; runs
    in the caller's transaction. Returns how many facts of each kind moved."""
    await conn.execute(_LOCK.format(kind=""), [tenant_id])
    old = await conn.fetchval(
        "SELECT timezone FROM store_timezones WHERE tenant_id = $1 AND store_id = $2",
        tenant_id,
        store_id,
    )
    if timezone is None:
        await conn.execute(
            "DELETE FROM store_timezones WHERE tenant_id = $1 AND store_id = $2",
            tenant_id,
            store_id,
        )
    else:
        await conn.execute(
            """
            INSERT INTO store_timezones (tenant_id, store_id, timezone, updated_at)
            VALUES ($1, $2, $3, now())
            ON CONFLICT (tenant_id, store_id) DO UPDATE
            SET timezone = EXCLUDED.timezone, updated_at = now()
            """,
            tenant_id,
            store_id,
            timezone,
        )
    if old == timezone:
        return {"order_lines": 0, "events": 0}
    lines = await _rebucket_lines(conn, tenant_id, store_id, timezone)
    events = await _rebucket_events(conn, tenant_id, store_id, old, timezone)
    return {"order_lines": lines, "events": events}


async def _rebucket_lines(
    conn: asyncpg.Connection, tenant_id: str, store_id: str, timezone: str | None
) -> int:
    """New local dates for the store's lines; every order rollup of the store rebuilt."""
    zone = "$3::text" if timezone else default_zone_sql("marketplace")
    args: list[Any] = [tenant_id, store_id, *([timezone] if timezone else [])]
    status = await conn.execute(
        f"UPDATE order_lines SET local_date = (purchased_at AT TIME ZONE {zone})::date "
        "WHERE tenant_id = $1 AND store_id = $2",
        *args,
    )
    moved = row_count(status)
    store = "tenant_id = $1 AND store_id = $2"
    for table in ("daily_sales", "daily_store_sales"):
        await conn.execute(f"DELETE FROM {table} WHERE {store}", tenant_id, store_id)
    await conn.execute(
        f"""
        INSERT INTO daily_sales (tenant_id, local_date, platform, store_id, marketplace, sku,
                                 category, currency, gross, shipping, discount, tax, units, lines)
        SELECT tenant_id, local_date, platform, store_id, marketplace, sku, category, currency,
               sum(quantity * unit_price), sum(shipping), sum(discount), sum(tax),
               sum(quantity), count(*)
        FROM order_lines WHERE {store} AND status <> 'cancelled'
        GROUP BY tenant_id, local_date, platform, store_id, marketplace, sku, category, currency
        """,
        tenant_id,
        store_id,
    )
    await conn.execute(
        f"""
        INSERT INTO daily_store_sales (tenant_id, local_date, platform, store_id, marketplace,
                                       currency, gross, shipping, discount, tax, units, lines)
        SELECT tenant_id, local_date, platform, store_id, marketplace, currency,
               sum(gross), sum(shipping), sum(discount), sum(tax), sum(units), sum(lines)
        FROM daily_sales WHERE {store}
        GROUP BY tenant_id, local_date, platform, store_id, marketplace, currency
        """,
        tenant_id,
        store_id,
    )
    # Every order of the store is touched: its date, its per-SKU and per-category counts
    # are recomputed, and the cells attached to it move with it. So do the refunds of
    # orders not pushed, which count at their own local date until their order comes.
    await FactRepository(conn).touch_orders(
        f"SELECT DISTINCT tenant_id, platform, store_id, order_id FROM order_lines WHERE {store}",
        tenant_id,
        store_id,
    )
    refunded = await conn.fetch(
        f"SELECT DISTINCT tenant_id, platform, store_id, payload->>'order_id' FROM events_raw "
        f"WHERE {store} AND type = 'refund'",
        tenant_id,
        store_id,
    )
    await move_order_attachments(conn, attached_keys(refunded), lines_moved=True)
    return moved


async def _rebucket_events(
    conn: asyncpg.Connection,
    tenant_id: str,
    store_id: str,
    old: str | None,
    new: str | None,
) -> int:
    """The store's other events: contributions under the old zone out, the new in."""
    rows = await conn.fetch(
        "SELECT * FROM events_raw WHERE tenant_id = $1 AND store_id = $2 "
        "AND type NOT IN ('fx_rate', 'unit_cost')",
        tenant_id,
        store_id,
    )
    added, removed = [], []
    for done, row in enumerate(rows):
        if done % YIELD_EVERY_ROWS == 0:
            # Reading a large store's history is the event loop's work, which the
            # consumer applying other tenants' events shares.
            await asyncio.sleep(0)
        payload = row["payload"]
        typed = PAYLOAD_MODELS[row["type"]].model_validate(
            orjson.loads(payload) if isinstance(payload, str) else payload, context=STORED
        )
        cells = (row["tenant_id"], row["platform"], row["store_id"], row["marketplace"])
        added.append((Source(*cells, new), typed))
        removed.append((Source(*cells, old), typed))
    await FactRepository(conn).move_measures(added, removed)
    return len(rows)
