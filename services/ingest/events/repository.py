"""The push API's own queries, on one asyncpg connection inside the caller's transaction."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

import asyncpg
import orjson

from shared.db import row_count
from shared.events import AdSpend, Event, Fee, InventorySnapshot, OrderLine, Traffic

if TYPE_CHECKING:
    from services.ingest.events.service import Idempotency


class AcceptedEvent(NamedTuple):
    """An accepted event's latest version; None where accepted before it was recorded."""

    version: int
    event_type: str | None
    store_id: str | None
    marketplace: str | None
    # An order line's category ("" for none); None for other types, or not recorded.
    category: str | None = None
    # The order it names; None for types that name none, or not recorded.
    order_id: str | None = None


# Events whose SKU is recorded with them: order lines, which give a SKU its category,
# and what is filed under that category (fees, ads, traffic, stock). The category is
# recorded for lines only; the others' is None.
CATEGORIZED_BY_SKU = (OrderLine, Fee, AdSpend, Traffic, InventorySnapshot)


def _accepted_event(row: asyncpg.Record) -> AcceptedEvent:
    """An event_versions row as what it was accepted as."""
    return AcceptedEvent(*(row[name] for name in AcceptedEvent._fields))


def stock_count_of(snapshot: InventorySnapshot) -> str:
    """The count a snapshot is of: its date, then its warehouse, as one text."""
    return f"{snapshot.date.isoformat()} {snapshot.warehouse}"


def order_of(event: Event) -> str | None:
    """The order an event names (a line, a refund, a shipment, a defect, a fee)."""
    order_id = getattr(event.payload, "order_id", None)
    return order_id if isinstance(order_id, str) else None


class EventRepository:
    """Accepted versions and idempotency keys of pushed events, one tenant per call."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def claim_idempotency_key(self, tenant_id: str, claimed: Idempotency) -> bool:
        """True when this request is the caller's first under the key; a concurrent twin
        waits on the row lock."""
        row = await self.conn.fetchrow(
            """
            INSERT INTO idempotency_keys (tenant_id, caller, key, request_hash, acting_tenant)
            VALUES ($1, $2, $3, $4, $5)
            ON CONFLICT (tenant_id, caller, key) DO NOTHING
            RETURNING key
            """,
            tenant_id,
            claimed.caller,
            claimed.key,
            claimed.request_hash,
            claimed.acting_tenant,
        )
        return row is not None

    async def stored_answer(self, tenant_id: str, caller: str, key: str) -> asyncpg.Record | None:
        """The key's request hash and first answer (status and body)."""
        return await self.conn.fetchrow(
            "SELECT request_hash, status, response FROM idempotency_keys "
            "WHERE tenant_id = $1 AND caller = $2 AND key = $3",
            tenant_id,
            caller,
            key,
        )

    async def store_answer(
        self, tenant_id: str, caller: str, key: str, status: int, body: dict[str, Any]
    ) -> None:
        """Remembers the answer of the request that claimed the key."""
        await self.conn.execute(
            "UPDATE idempotency_keys SET status = $4, response = $5::jsonb "
            "WHERE tenant_id = $1 AND caller = $2 AND key = $3",
            tenant_id,
            caller,
            key,
            status,
            orjson.dumps(body).decode(),
        )

    async def hold_pushes(self, tenant_id: str, *, alone: bool) -> None:
        """Until the transaction ends. A caller limited to some stores, marketplaces or
        categories pushes ``alone``: its checks of what it would replace read the events
        accepted before, and a push of the whole tenant's committed between those checks
        and its own writes (an event id new at the check) would be replaced unchecked.
        Other pushes share the hold, and never wait for each other."""
        lock = "pg_advisory_xact_lock" if alone else "pg_advisory_xact_lock_shared"
        await self.conn.execute(
            f"SELECT {lock}(hashtextextended('ingest.pushes:' || $1, 0))", tenant_id
        )

    async def lock_versions(self, tenant_id: str, event_ids: list[str]) -> dict[str, AcceptedEvent]:
        """Locks the rows of these events, in event id order, until the transaction ends,
        and returns what each one accepted before was accepted as.

        An id never accepted gets a row of version 0 to lock: two pushes would otherwise
        lock the known ids first and the new ones later, each in its own order, and
        deadlock. ``accept_versions`` in the same transaction replaces every such row.
        """
        rows = await self.conn.fetch(
            """
            INSERT INTO event_versions AS ev (tenant_id, event_id, version)
            SELECT $1, e.event_id, 0 FROM unnest($2::text[]) AS e(event_id)
            ON CONFLICT (tenant_id, event_id) DO UPDATE SET version = ev.version
            RETURNING event_id, version, event_type, store_id, marketplace, category, order_id
            """,
            tenant_id,
            sorted(event_ids),
        )
        return {row["event_id"]: _accepted_event(row) for row in rows if row["version"] > 0}

    async def accept_versions(self, tenant_id: str, events: list[Event]) -> set[str]:
        """Records each event's version (and where it belongs) when it is new or higher
        and of the type it was accepted as; returns the accepted ids.

        One statement for the whole batch: the row lock on a known event_id also
        serialises two pushes of the same event, so exactly one of them is accepted.
        """
        # Rows are locked in event id order, as ``accepted`` locks them: two pushes of the
        # same events in different orders would otherwise each wait for the other.
        events = sorted(events, key=lambda e: e.event_id)
        rows = await self.conn.fetch(
            """
            INSERT INTO event_versions AS ev
                (tenant_id, event_id, version, store_id, marketplace, event_type, category, sku,
                 order_id, stock_count)
            SELECT $1, e.* FROM unnest(
                $2::text[], $3::int[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[],
                $9::text[], $10::text[]
            ) AS e(event_id, version, store_id, marketplace, event_type, category, sku, order_id,
                   stock_count)
            ON CONFLICT (tenant_id, event_id) DO UPDATE SET
                version = EXCLUDED.version,
                store_id = EXCLUDED.store_id,
                marketplace = EXCLUDED.marketplace,
                event_type = EXCLUDED.event_type,
                category = EXCLUDED.category,
                sku = EXCLUDED.sku,
                order_id = EXCLUDED.order_id,
                stock_count = EXCLUDED.stock_count
            WHERE ev.version < EXCLUDED.version
              AND (ev.event_type IS NULL OR ev.event_type = EXCLUDED.event_type)
            RETURNING event_id
            """,
            tenant_id,
            [e.event_id for e in events],
            [e.version for e in events],
            [e.source.store_id for e in events],
            [e.source.marketplace for e in events],
            [e.type for e in events],
            [
                (e.payload.category or "") if isinstance(e.payload, OrderLine) else None
                for e in events
            ],
            [e.payload.sku if isinstance(e.payload, CATEGORIZED_BY_SKU) else None for e in events],
            [order_of(e) for e in events],
            [
                stock_count_of(e.payload) if isinstance(e.payload, InventorySnapshot) else None
                for e in events
            ],
        )
        return {row["event_id"] for row in rows}

    async def counts_beyond_marketplaces(
        self, tenant_id: str, counts: set[tuple[str, str, str]], marketplaces: frozenset[str]
    ) -> set[tuple[str, str, str]]:
        """Of these (store, SKU, count) keys, those an inventory snapshot accepted under
        another marketplace than ``marketplaces`` holds (its latest version).

        Each key is locked until the transaction ends, in order: a snapshot pushed beside
        the check would otherwise be replaced unchecked."""
        stores, skus, stock_counts = zip(*sorted(counts), strict=True) if counts else ((), (), ())
        await self.conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended("
            "'ingest.stock:' || $1 || ':' || s || ':' || k || ':' || c, 0)) "
            "FROM unnest($2::text[], $3::text[], $4::text[]) AS t(s, k, c) ORDER BY s, k, c",
            tenant_id,
            list(stores),
            list(skus),
            list(stock_counts),
        )
        rows = await self.conn.fetch(
            """
            SELECT DISTINCT ev.store_id, ev.sku, ev.stock_count
            FROM unnest($2::text[], $3::text[], $4::text[]) AS c(store_id, sku, stock_count)
            JOIN event_versions ev ON ev.tenant_id = $1 AND ev.store_id = c.store_id
                                  AND ev.sku = c.sku AND ev.stock_count = c.stock_count
            WHERE ev.marketplace <> ALL($5::text[])
            """,
            tenant_id,
            list(stores),
            list(skus),
            list(stock_counts),
            sorted(marketplaces),
        )
        return {(row["store_id"], row["sku"], row["stock_count"]) for row in rows}

    async def events_of_orders(
        self, tenant_id: str, orders: set[tuple[str, str]]
    ) -> dict[tuple[str, str], list[AcceptedEvent]]:
        """The events accepted for each (store, order) (their latest versions).

        Each order is locked until the transaction ends, in order: two callers limited
        to two categories adding to one new order at once would each find it empty."""
        stores, order_ids = zip(*sorted(orders), strict=True) if orders else ((), ())
        await self.conn.execute(
            "SELECT pg_advisory_xact_lock("
            "hashtextextended('ingest.order:' || $1 || ':' || s || ':' || o, 0)) "
            "FROM unnest($2::text[], $3::text[]) AS t(s, o) ORDER BY s, o",
            tenant_id,
            list(stores),
            list(order_ids),
        )
        rows = await self.conn.fetch(
            """
            SELECT ev.store_id, ev.order_id, ev.version, ev.event_type, ev.marketplace,
                   ev.category
            FROM unnest($2::text[], $3::text[]) AS o(store_id, order_id)
            JOIN event_versions ev ON ev.tenant_id = $1 AND ev.store_id = o.store_id
                                  AND ev.order_id = o.order_id
            """,
            tenant_id,
            list(stores),
            list(order_ids),
        )
        found: dict[tuple[str, str], list[AcceptedEvent]] = {}
        for row in rows:
            found.setdefault((row["store_id"], row["order_id"]), []).append(_accepted_event(row))
        return found

    async def categories_of_skus(
        self,
        tenant_id: str,
        skus: list[str],
        *,
        beyond_stores: frozenset[str] | None = None,
        beyond_marketplaces: frozenset[str] | None = None,
    ) -> dict[str, set[str | None]]:
        """Each SKU's categories among the order lines accepted (their latest versions),
        with None when fees, ads, traffic or stock of it were accepted too; with
        ``beyond_stores`` or ``beyond_marketplaces``, only among events outside those
        stores or marketplaces.

        Each SKU is locked until the transaction ends, in SKU order: two callers limited
        to two categories pushing a new SKU at once would each find it unsold."""
        await self.conn.execute(
            "SELECT pg_advisory_xact_lock(hashtext('ingest.sku:' || $1 || ':' || sku)) "
            "FROM (SELECT DISTINCT sku FROM unnest($2::text[]) AS s(sku) ORDER BY sku) ordered",
            tenant_id,
            skus,
        )
        rows = await self.conn.fetch(
            "SELECT sku, array_agg(DISTINCT category) AS categories FROM event_versions "
            "WHERE tenant_id = $1 AND sku = ANY($2::text[]) "
            "AND ($3::text[] IS NULL AND $4::text[] IS NULL "
            "OR NOT (coalesce(store_id = ANY($3), $3 IS NULL) "
            "AND coalesce(marketplace = ANY($4), $4 IS NULL))) GROUP BY sku",
            tenant_id,
            skus,
            sorted(beyond_stores) if beyond_stores is not None else None,
            sorted(beyond_marketplaces) if beyond_marketplaces is not None else None,
        )
        return {row["sku"]: set(row["categories"]) for row in rows}

    async def accepted(self, tenant_id: str, event_ids: list[str]) -> dict[str, AcceptedEvent]:
        """What each of these events was accepted as, locked until the transaction ends
        so what is checked is what gets replaced."""
        rows = await self.conn.fetch(
            """
            SELECT event_id, version, event_type, store_id, marketplace, category, order_id
            FROM event_versions
            WHERE tenant_id = $1 AND event_id = ANY($2::text[])
            ORDER BY event_id
            FOR UPDATE
            """,
            tenant_id,
            event_ids,
        )
        return {row["event_id"]: _accepted_event(row) for row in rows}

    async def delete_idempotency_keys_before(self, hours: int) -> int:
        """Forgets idempotency keys older than ``hours`` (all tenants); returns how many."""
        status = await self.conn.execute(
            "DELETE FROM idempotency_keys WHERE created_at < now() - make_interval(hours => $1)",
            hours,
        )
        return row_count(status)
