"""What each non-order event adds to the daily measures.

An event contributes amounts to (local date, store, SKU, measure, currency) cells.
When a higher version replaces an event, its old contributions are taken out and its
new ones put in, so every rollup cell always equals the sum over the latest versions.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from shared.events import (
    AdSpend,
    CsTicket,
    Fee,
    InventorySnapshot,
    Payload,
    Refund,
    Shipment,
    Traffic,
)
from shared.time import local_date

COUNT = ""  # the currency of counts


@dataclass(frozen=True)
class Source:
    tenant_id: str
    platform: str
    store_id: str
    marketplace: str
    # The store's own time zone when the tenant overrode the marketplace's.
    timezone: str | None = None


Cell = tuple[str, date, str, str, str, str, str, str]


def _cell(source: Source, day: date, sku: str | None, measure: str, currency: str) -> Cell:
    return (
        source.tenant_id,
        day,
        source.platform,
        source.store_id,
        source.marketplace,
        sku or "",
        measure,
        currency,
    )


def contributions(source: Source, payload: Payload) -> list[tuple[Cell, Decimal]]:
    """The cells an event adds to, with the amount it adds."""
    one = Decimal(1)
    if isinstance(payload, Refund):
        day = local_date(payload.refunded_at, source.marketplace, source.timezone)
        return [
            (
                _cell(source, day, payload.sku, "refund_amount", payload.amount.currency),
                payload.amount.amount,
            ),
            (_cell(source, day, payload.sku, "refunds_count", COUNT), one),
        ]
    if isinstance(payload, Fee):
        day = local_date(payload.charged_at, source.marketplace, source.timezone)
        return [
            (
                _cell(source, day, payload.sku, "fee_amount", payload.amount.currency),
                payload.amount.amount,
            )
        ]
    if isinstance(payload, AdSpend):
        return [
            (
                _cell(source, payload.date, payload.sku, "ad_cost", payload.cost.currency),
                payload.cost.amount,
            ),
            (
                _cell(
                    source, payload.date, payload.sku, "ad_sales", payload.attributed_sales.currency
                ),
                payload.attributed_sales.amount,
            ),
            (
                _cell(source, payload.date, payload.sku, "impressions", COUNT),
                Decimal(payload.impressions),
            ),
            (_cell(source, payload.date, payload.sku, "clicks", COUNT), Decimal(payload.clicks)),
            (
                _cell(source, payload.date, payload.sku, "ad_orders", COUNT),
                Decimal(payload.attributed_orders),
            ),
        ]
    if isinstance(payload, Traffic):
        cells = [
            (_cell(source, payload.date, payload.sku, "sessions", COUNT), Decimal(payload.sessions))
        ]
        if payload.page_views is not None:
            cells.append(
                (
                    _cell(source, payload.date, payload.sku, "page_views", COUNT),
                    Decimal(payload.page_views),
                )
            )
        return cells
    if isinstance(payload, InventorySnapshot):
        # Warehouses of a SKU add up; the count tells a snapshot of zero from no snapshot.
        # The consumer passes a warehouse's latest snapshot of a date only: see
        # FactRepository.latest_snapshots.
        return [
            (_cell(source, payload.date, payload.sku, "on_hand", COUNT), Decimal(payload.on_hand)),
            (_cell(source, payload.date, payload.sku, "snapshots", COUNT), one),
        ]
    if isinstance(payload, Shipment):
        due = local_date(payload.promised_ship_by, source.marketplace, source.timezone)
        cells = []
        if payload.shipped_at is None:
            # Cancelled by the seller before shipping, it never ships: marketplaces count
            # it in the cancel rate (pre_fulfillment_cancel_rate) and not as due.
            if not payload.cancelled_by_seller_before_ship:
                cells.append((_cell(source, due, None, "shipments_due", COUNT), one))
                # Late once its promised day has passed: decided when asked, not now.
                cells.append((_cell(source, due, None, "shipments_unshipped", COUNT), one))
        else:
            cells.append((_cell(source, due, None, "shipments_due", COUNT), one))
            if payload.shipped_at > payload.promised_ship_by:
                cells.append((_cell(source, due, None, "shipments_shipped_late", COUNT), one))
            shipped = local_date(payload.shipped_at, source.marketplace, source.timezone)
            cells.append((_cell(source, shipped, None, "shipments_shipped", COUNT), one))
            if payload.tracking_valid:
                cells.append((_cell(source, shipped, None, "shipments_tracked", COUNT), one))
        if payload.delivered_at is not None:
            delivered = local_date(payload.delivered_at, source.marketplace, source.timezone)
            cells.append((_cell(source, delivered, None, "deliveries", COUNT), one))
            promised = payload.promised_delivery_by
            if promised is not None and payload.delivered_at <= promised:
                cells.append((_cell(source, delivered, None, "deliveries_on_time", COUNT), one))
        return cells
    if isinstance(payload, CsTicket):
        day = local_date(payload.opened_at, source.marketplace, source.timezone)
        cells = [(_cell(source, day, None, "tickets", COUNT), one)]
        if payload.first_response_at is not None:
            hours = Decimal((payload.first_response_at - payload.opened_at).total_seconds()) / 3600
            cells += [
                (_cell(source, day, None, "first_response_hours_sum", COUNT), hours),
                (_cell(source, day, None, "first_responses", COUNT), one),
            ]
        if payload.csat is not None:
            cells += [
                (_cell(source, day, None, "csat_sum", COUNT), Decimal(payload.csat)),
                (_cell(source, day, None, "csat_count", COUNT), one),
            ]
        return cells
    return []


def net_deltas(
    added: Iterable[tuple[Source, Payload]], removed: Iterable[tuple[Source, Payload]]
) -> list[tuple[Any, ...]]:
    """Rows (cell..., delta, facts delta) that move the rollup from the old events to
    the new ones. A cell counts its facts besides summing them: a fee of 0, or fees of
    +2 and -2, are data and keep their row."""
    deltas: dict[Cell, Decimal] = defaultdict(Decimal)
    facts: dict[Cell, int] = defaultdict(int)
    for events, sign in ((added, 1), (removed, -1)):
        for source, payload in events:
            for cell, amount in contributions(source, payload):
                deltas[cell] += sign * amount
                facts[cell] += sign
    return [
        (*cell, delta, facts[cell])
        for cell, delta in deltas.items()
        if delta != 0 or facts[cell] != 0
    ]


def cells_of(events: Iterable[tuple[Source, Payload]]) -> list[Cell]:
    """Every cell the events add to."""
    return [cell for source, payload in events for cell, _ in contributions(source, payload)]
