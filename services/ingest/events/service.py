"""Accepting a pushed batch: validate it whole, drop duplicates, write the outbox."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any, Literal

import orjson
from fastapi.responses import JSONResponse

from services.ingest.events.repository import (
    AcceptedEvent,
    EventRepository,
    order_of,
    stock_count_of,
)
from services.ingest.outbox.repository import OutboxRepository
from shared.access import Access
from shared.auth import Principal
from shared.errors import (
    Conflict,
    FieldError,
    Forbidden,
    InvalidInput,
    InvalidJson,
    PayloadTooLarge,
    named_briefly,
)
from shared.events import Event, InventorySnapshot, OrderLine, topic_for, validate_batch
from shared.input_guard import loads_beyond_doubles
from shared.telemetry import inject_headers
from shared.time import utcnow

MAX_IDEMPOTENCY_KEY_LENGTH = 255


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]
    # The stored answer of an earlier request under the same Idempotency-Key.
    replayed: bool = False

    def response(self) -> JSONResponse:
        # A replay says so, as Stripe's Idempotent-Replayed does: its counts are the
        # first request's, not what this one stored (nothing).
        headers = {"Idempotent-Replayed": "true"} if self.replayed else None
        return JSONResponse(self.body, status_code=self.status, headers=headers)


# Far more fields than any event, payload or amount has: past them an object is refused
# unread (an event with a million unknown keys took 13 s to list its errors).
MAX_FIELDS = 100


def _refuse_too_wide(events: list[Any]) -> None:
    # On every event of every push: a plain loop, no list built per event.
    wide: list[tuple[int, str]] = []
    for index, event in enumerate(events):
        if type(event) is not dict:
            continue
        if len(event) > MAX_FIELDS:
            wide.append((index, "event"))
        source = event.get("source")
        if type(source) is dict and len(source) > MAX_FIELDS:
            wide.append((index, "source"))
        payload = event.get("payload")
        if type(payload) is not dict:
            continue
        if len(payload) > MAX_FIELDS:
            wide.append((index, "payload"))
        for name, value in payload.items():
            if type(value) is dict and len(value) > MAX_FIELDS:
                wide.append((index, f"payload.{name}"))
    if wide:
        errors = [
            FieldError(field=field, reason=f"at most {MAX_FIELDS} fields", index=index)
            for index, field in wide
        ]
        raise InvalidInput(
            f"{len(errors)} object(s) with more than {MAX_FIELDS} fields; nothing was stored",
            errors,
        )


def _beyond_doubles(raw: bytes) -> Any:
    try:
        return loads_beyond_doubles(raw)
    except (ValueError, RecursionError):
        raise InvalidJson() from None


def parse_body(raw: bytes, max_events: int) -> list[Any]:
    """The ``events`` list of a push body, or a 4xx naming what is wrong."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        body = _beyond_doubles(raw)
    if not isinstance(body, dict) or not isinstance(body.get("events"), list):
        raise InvalidInput(
            "the body must be an object with an events list",
            [FieldError(field="events", reason="required: a list of events")],
        )
    unknown = sorted(name for name in body if name != "events")
    if unknown:
        raise InvalidInput(
            f"unknown field(s) beside events: {named_briefly(unknown)}",
            [FieldError(field=name, reason="unknown field") for name in unknown],
        )
    events: list[Any] = body["events"]
    _refuse_too_wide(events)
    if len(events) > max_events:
        raise PayloadTooLarge(
            f"{len(events)} events in one request; at most {max_events} are accepted",
            # A 413 names the body and its limit, as the CSV upload's does.
            [FieldError(field="body", reason=f"at most {max_events} events a request")],
        )
    if not events:
        raise InvalidInput(
            "the batch is empty", [FieldError(field="events", reason="at least one event")]
        )
    return events


def check_idempotency_key(key: str | None) -> str | None:
    """The ``Idempotency-Key`` header when present and 1 to 255 characters, else a 422."""
    if key is None:
        return None
    if not key.strip() or len(key) > MAX_IDEMPOTENCY_KEY_LENGTH:
        raise InvalidInput(
            "invalid Idempotency-Key header",
            [
                FieldError(
                    field="header.Idempotency-Key",
                    reason=f"1 to {MAX_IDEMPOTENCY_KEY_LENGTH} characters",
                )
            ],
        )
    return key


def _latest_per_event(events: list[Event]) -> list[Event]:
    """One event per id, the highest version; the others in the batch are duplicates."""
    latest: dict[str, Event] = {}
    for event in events:
        kept = latest.get(event.event_id)
        if kept is None or event.version > kept.version:
            latest[event.event_id] = event
    return list(latest.values())


def _names_an_id_twice(events: list[Event]) -> bool:
    return len({e.event_id for e in events}) < len(events)


def _new_versions(
    events: list[Event], accepted_ids: set[str], before: dict[str, AcceptedEvent]
) -> int:
    """How many of the batch's events pushing them one by one would have accepted
    (CONTRACT §3: only the same or a lower version is a duplicate): of each accepted id,
    the versions higher than every one before them. Only the highest is stored."""
    highest = {i: before[i].version if i in before else 0 for i in accepted_ids}
    new = 0
    for event in events:
        if event.event_id in highest and event.version > highest[event.event_id]:
            highest[event.event_id] = event.version
            new += 1
    return new


def _message(event: Event, tenant_id: str, ingested_at: str) -> bytes:
    return orjson.dumps(
        {
            "tenant_id": tenant_id,
            "event_id": event.event_id,
            "type": event.type,
            "version": event.version,
            "source": event.source.model_dump(mode="json"),
            "occurred_at": event.occurred_at.isoformat(),
            "ingested_at": ingested_at,
            "payload": event.payload.model_dump(mode="json", exclude_none=True),
        }
    )


def validate(raw_events: list[Any], rows: Sequence[int] | None = None) -> list[Event]:
    """The batch's events when every one is valid; otherwise a 422 naming each bad one.

    ``rows`` are the file lines of the events when the batch came from a file, so
    errors name lines too.
    """
    events, errors = validate_batch(raw_events)
    if not errors:
        errors = _types_changed_within(events)
    if errors:
        bad = len({e.index for e in errors})
        if rows is not None:
            errors = [replace(e, row=None if e.index is None else rows[e.index]) for e in errors]
        raise InvalidInput(f"{bad} invalid event(s); nothing was stored", errors)
    return events


def _types_changed_within(events: list[Event]) -> list[FieldError]:
    """An event id pushed twice in one batch as two types, the later a higher version:
    a new version cannot change its type, whether its versions come in one request or
    in several (only the highest of a batch is kept, so the other type would vanish
    without a word). A same or lower version is a duplicate, of whatever type, as it
    would be pushed on its own."""
    kept: dict[str, tuple[int, Event]] = {}
    errors: list[FieldError] = []
    for index, event in enumerate(events):
        earlier = kept.get(event.event_id)
        if earlier is not None and event.version <= earlier[1].version:
            continue
        if earlier is not None and earlier[1].type != event.type:
            reason = (
                f"event {event.event_id} is pushed as {earlier[1].type} at index {earlier[0]} "
                "of this batch; a new version cannot change its type"
            )
            errors.append(FieldError("type", reason, index=index))
            continue
        kept[event.event_id] = (index, event)
    return errors


def _row(index: int, rows: Sequence[int] | None) -> int | None:
    """The file line of event ``index`` when the batch came from a file."""
    return None if rows is None else rows[index]


# Event types that change other stores' numbers than the one they name, and why.
TENANT_WIDE_TYPES = {
    "fx_rate": "fx_rate applies to every store",
    # A store without a cost of its own takes the tenant's newest from any store.
    "unit_cost": "unit_cost prices every store that has no cost of its own",
}


def check_stores(events: list[Event], access: Access, rows: Sequence[int] | None = None) -> None:
    """A caller limited to stores or marketplaces (an agency's grant, a user's role)
    pushes only into those, and one limited to categories only order lines of those;
    403 naming each event outside. An FX rate applies to the whole tenant whatever its
    source (CONTRACT §4), and a unit cost to every store without one of its own, so no
    limited caller pushes either."""
    errors: list[FieldError] = []
    for index, event in enumerate(events):
        row = _row(index, rows)
        if access.limited and event.type in TENANT_WIDE_TYPES:
            reason = f"{TENANT_WIDE_TYPES[event.type]}; this caller may reach only some"
            errors.append(FieldError("type", reason, index=index, row=row))
        payload = event.payload
        if access.categories is not None:
            if not isinstance(payload, OrderLine):
                # A refund, fee, ad or count names an order or SKU whose category only
                # order lines tell: a Lamps manager could refund another category's order.
                reason = f"{event.type} names no category; this caller may push order lines only"
                errors.append(FieldError("type", reason, index=index, row=row))
            elif payload.category not in access.categories:
                reason = f"category {payload.category or '(none)'} is outside this caller's reach"
                errors.append(FieldError("payload.category", reason, index=index, row=row))
        if access.stores is not None and event.source.store_id not in access.stores:
            reason = f"store {event.source.store_id} is outside this caller's reach"
            errors.append(FieldError("source.store_id", reason, index=index, row=row))
        if access.marketplaces is not None and event.source.marketplace not in access.marketplaces:
            reason = f"marketplace {event.source.marketplace} is outside this caller's reach"
            errors.append(FieldError("source.marketplace", reason, index=index, row=row))
    if errors:
        bad = len({e.index for e in errors})
        raise Forbidden(f"{bad} event(s) lie outside what this caller may reach", errors)


async def check_replaced(
    repository: EventRepository,
    tenant_id: str,
    events: list[Event],
    access: Access,
    rows: Sequence[int] | None = None,
) -> None:
    """A caller limited to stores or marketplaces may name an event already accepted
    only when that event lies within them too, and one limited to categories an order
    line only of those: a higher version would otherwise move another store's sale
    into one it may push to, or cancel another category's. 403 naming each such event."""
    if not access.limited:
        return
    stored = await repository.accepted(tenant_id, sorted({e.event_id for e in events}))
    errors: list[FieldError] = []
    for index, event in enumerate(events):
        accepted = stored.get(event.event_id)
        if accepted is None:
            continue
        # An order line of another category (or of one not recorded): cancelling or
        # renaming it would erase what this caller may not see.
        other_store = access.stores is not None and accepted.store_id not in access.stores
        if other_store or _beyond_reach(accepted, access):
            row = _row(index, rows)
            # Whatever its version: a caller may not learn which version is stored there.
            reason = "is taken by an event outside what this caller may reach"
            errors.append(FieldError("event_id", reason, index=index, row=row))
    # Orders are locked before SKUs, by every caller: two pushes never wait for each other.
    if access.marketplaces is not None or access.categories is not None:
        errors += await _orders_beyond_reach(repository, tenant_id, events, stored, access, rows)
    if access.categories is not None:
        errors += await _skus_of_other_categories(repository, tenant_id, events, access, rows)
    else:
        errors += await _skus_sold_beyond_reach(repository, tenant_id, events, access, rows)
    if access.marketplaces is not None:
        errors += await _counts_beyond_reach(repository, tenant_id, events, access, rows)
    if errors:
        bad = len({e.index for e in errors})
        raise Forbidden(f"{bad} event(s) reach beyond what this caller may push to", errors)


def _beyond_reach(accepted: AcceptedEvent, access: Access) -> bool:
    """Whether an accepted event lies outside the caller's marketplaces, or is an order
    line (or an event not recorded) outside its categories."""
    return (
        access.marketplaces is not None and accepted.marketplace not in access.marketplaces
    ) or (
        access.categories is not None
        and accepted.event_type in ("order_line", None)
        and accepted.category not in access.categories
    )


def _order_beyond_reach(held: list[AcceptedEvent], access: Access) -> bool:
    """Whether an order holds an event outside the caller's reach; for one limited to
    categories, a refund, shipment or defect of an order no line of which is recorded
    too (it has no category of its own: it takes its order's lines')."""
    if any(_beyond_reach(accepted, access) for accepted in held):
        return True
    return (
        access.categories is not None
        and not any(accepted.event_type == "order_line" for accepted in held)
        and bool(held)
    )


async def _orders_beyond_reach(
    repository: EventRepository,
    tenant_id: str,
    events: list[Event],
    stored: dict[str, AcceptedEvent],
    access: Access,
    rows: Sequence[int] | None,
) -> list[FieldError]:
    """An order is the caller's to add to, or take a line out of, only when every event
    accepted for it lies within its reach (``_beyond_reach``): a line, a refund or a
    defect under another's order id, or its own line moved out of a shared order, would
    move that order's date, cancellation or defects for everyone, and tell the caller
    when it was placed."""
    touched: dict[int, list[tuple[str, str]]] = {}
    for index, event in enumerate(events):
        orders = []
        if (order := order_of(event)) is not None:
            orders.append((event.source.store_id, order))
        before = stored.get(event.event_id)
        if before is not None and before.order_id is not None and before.store_id is not None:
            orders.append((before.store_id, before.order_id))
        if orders:
            touched[index] = orders
    if not touched:
        return []
    accepted = await repository.events_of_orders(
        tenant_id, {order for orders in touched.values() for order in orders}
    )
    errors = []
    for index, orders in touched.items():
        for store_id, order in dict.fromkeys(orders):
            if _order_beyond_reach(accepted.get((store_id, order), []), access):
                reason = f"order {order} holds events outside what this caller may reach"
                row = _row(index, rows)
                errors.append(FieldError("payload.order_id", reason, index=index, row=row))
    return errors


async def _skus_of_other_categories(
    repository: EventRepository,
    tenant_id: str,
    events: list[Event],
    access: Access,
    rows: Sequence[int] | None,
) -> list[FieldError]:
    """A SKU's fees, ads, traffic and stock follow its newest order line's category: a
    caller limited to some categories may sell only SKUs no line names another (nor one
    not recorded) under, or one line would hand it another category's measures."""
    assert access.categories is not None
    skus = sorted({e.payload.sku for e in events if isinstance(e.payload, OrderLine)})
    sold_under = await repository.categories_of_skus(tenant_id, skus)
    reasons = {
        "lines": "SKU {} is sold under another category too",
        "measures": "SKU {} has fees, ads, traffic or stock of no category",
    }
    errors = []
    for index, event in enumerate(events):
        if not isinstance(event.payload, OrderLine):
            continue
        sku = event.payload.sku
        if refiled := _refiled(sold_under.get(sku, set()), access.categories):
            reason = reasons[refiled].format(sku)
            errors.append(FieldError("payload.sku", reason, index=index, row=_row(index, rows)))
    return errors


def _refiled(
    recorded: set[str | None], allowed: AbstractSet[str]
) -> Literal["lines", "measures"] | None:
    """What a line naming a category of ``allowed`` would take over of a SKU whose
    ``recorded`` categories are those of its lines (None for its fees, ads, traffic or
    stock): lines of another category, or of none; or, where no line names the SKU,
    its measures, which would take the line's category. None when nothing."""
    lines = recorded - {None}
    if lines - allowed:
        return "lines"
    if not lines and None in recorded:
        return "measures"
    return None


async def _skus_sold_beyond_reach(
    repository: EventRepository,
    tenant_id: str,
    events: list[Event],
    access: Access,
    rows: Sequence[int] | None,
) -> list[FieldError]:
    """A SKU's category, tenant-wide, is its newest line's that names one: a caller
    limited to stores or marketplaces may name a category for a SKU only when no line
    outside its reach sells it under another (or under none), or one line of its own
    would file that SKU's ads, fees and stock in the other stores under its choice."""
    named = [
        (i, e.payload, e.payload.category)
        for i, e in enumerate(events)
        if isinstance(e.payload, OrderLine) and e.payload.category
    ]
    if not named:
        return []
    sold_beyond = await repository.categories_of_skus(
        tenant_id,
        sorted({line.sku for _, line, _ in named}),
        beyond_stores=access.stores,
        beyond_marketplaces=access.marketplaces,
    )
    reasons = {
        "lines": "SKU {} is sold under another category outside what this caller may reach",
        "measures": "SKU {} has fees, ads, traffic or stock outside what this caller may reach",
    }
    errors = []
    for index, line, category in named:
        if refiled := _refiled(sold_beyond.get(line.sku, set()), {category}):
            reason = reasons[refiled].format(line.sku)
            errors.append(
                FieldError("payload.category", reason, index=index, row=_row(index, rows))
            )
    return errors


async def _counts_beyond_reach(
    repository: EventRepository,
    tenant_id: str,
    events: list[Event],
    access: Access,
    rows: Sequence[int] | None,
) -> list[FieldError]:
    """A warehouse's stock on a date is its latest snapshot, sent under whichever
    marketplace: a caller limited to marketplaces may count a warehouse only on dates no
    snapshot outside them counted it, or its count would replace another marketplace's
    for everyone (and tell the caller one was there)."""
    assert access.marketplaces is not None
    snapshots = [
        (index, event.source.store_id, event.payload)
        for index, event in enumerate(events)
        if isinstance(event.payload, InventorySnapshot)
    ]
    if not snapshots:
        return []
    beyond = await repository.counts_beyond_marketplaces(
        tenant_id,
        {(store_id, snapshot.sku, stock_count_of(snapshot)) for _, store_id, snapshot in snapshots},
        access.marketplaces,
    )
    errors = []
    for index, store_id, snapshot in snapshots:
        if (store_id, snapshot.sku, stock_count_of(snapshot)) in beyond:
            reason = (
                f"warehouse {snapshot.warehouse} of store {store_id} was counted for SKU "
                f"{snapshot.sku} on {snapshot.date.isoformat()} outside what this caller may "
                "reach"
            )
            errors.append(
                FieldError("payload.warehouse", reason, index=index, row=_row(index, rows))
            )
    return errors


def fingerprint(raw_body: bytes) -> str:
    """What an Idempotency-Key remembers of its request, to tell a replay from a reuse."""
    return hashlib.sha256(raw_body).hexdigest()


def json_fingerprint(events: list[Any]) -> str:
    """The fingerprint of a JSON push as parsed: a client that serialises its retry
    again (other spacing, other key order) sends the same request."""
    return fingerprint(orjson.dumps(events, option=orjson.OPT_SORT_KEYS))


@dataclass(frozen=True)
class Idempotency:
    """A push's ``Idempotency-Key``: the caller's own (its token's client, and its user
    for a user's token), so two callers of a tenant may number pushes alike."""

    caller: str
    key: str
    request_hash: str
    # The agency that claims it under a grant, else None.
    acting_tenant: str | None = None


def caller_of(principal: Principal) -> str:
    return f"{principal.client_id} {principal.subject}"


async def accept(
    repository: EventRepository,
    outbox: OutboxRepository,
    tenant_id: str,
    events: list[Event],
    idempotency: Idempotency | None,
    topic_prefix: str,
    rows: Sequence[int] | None = None,
) -> Answer:
    """Stores a valid batch's new events in the outbox; the caller's transaction commits it.

    With an ``idempotency`` key the answer is stored in the same transaction, and the
    caller's later request under the same key gets that answer back and stores nothing.
    A concurrent twin blocks on the key's row until the first commits, then replays it.
    """
    if idempotency is not None and not await repository.claim_idempotency_key(
        tenant_id, idempotency
    ):
        return await _replay(repository, tenant_id, idempotency)

    latest = _latest_per_event(events)
    # What an id named twice was before tells which of its versions are new; every id
    # of the batch is locked with it, in one pass in id order (no deadlock).
    before = (
        await repository.lock_versions(tenant_id, [e.event_id for e in latest])
        if _names_an_id_twice(events)
        else {}
    )
    accepted_ids = await repository.accept_versions(tenant_id, latest)
    await _refuse_type_changes(repository, tenant_id, events, latest, accepted_ids, rows)
    accepted = [e for e in latest if e.event_id in accepted_ids]
    if accepted:
        pushed_at = utcnow()
        # A microsecond apart in batch order: of two rates for one pair and date, the
        # one pushed last counts, in one batch as in two.
        position = {id(e): i for i, e in enumerate(events)}
        # The request's span: the relay hands it on in each record's headers, so the
        # caller's trace continues into the consumers.
        trace = inject_headers()
        traceparent, tracestate = trace.get("traceparent"), trace.get("tracestate")
        await outbox.add(
            [
                (
                    tenant_id,
                    e.event_id,
                    e.version,
                    e.type,
                    topic_for(e.type, topic_prefix),
                    _message(
                        e,
                        tenant_id,
                        (pushed_at + timedelta(microseconds=position[id(e)])).isoformat(),
                    ),
                    traceparent,
                    tracestate,
                )
                for e in accepted
            ]
        )
    new = _new_versions(events, accepted_ids, before)
    answer = Answer(202, {"accepted": new, "duplicates": len(events) - new})
    if idempotency is not None:
        await repository.store_answer(
            tenant_id, idempotency.caller, idempotency.key, answer.status, answer.body
        )
    return answer


async def _refuse_type_changes(
    repository: EventRepository,
    tenant_id: str,
    events: list[Event],
    latest: list[Event],
    accepted_ids: set[str],
    rows: Sequence[int] | None,
) -> None:
    """A higher version of another type than the event was accepted as: 422 (the caller's
    transaction rolls back). Replacing it would leave the old one counted where it was:
    an order line does not stop counting because a fee took its id."""
    pushed = {e.event_id: e for e in latest if e.event_id not in accepted_ids}
    if not pushed:
        return
    stored = await repository.accepted(tenant_id, sorted(pushed))
    changed = {
        event_id
        for event_id, accepted in stored.items()
        if accepted.version < pushed[event_id].version
        and accepted.event_type not in (None, pushed[event_id].type)
    }
    if not changed:
        return
    errors = [
        FieldError(
            "type",
            f"event {event.event_id} was accepted as {stored[event.event_id].event_type}; "
            "a new version cannot change its type",
            index=index,
            row=_row(index, rows),
        )
        for index, event in enumerate(events)
        if event.event_id in changed and event.type != stored[event.event_id].event_type
    ]
    raise InvalidInput(f"{len(changed)} event(s) would change type; nothing was stored", errors)


async def _replay(repository: EventRepository, tenant_id: str, idempotency: Idempotency) -> Answer:
    stored = await repository.stored_answer(tenant_id, idempotency.caller, idempotency.key)
    if stored is None or stored["status"] is None:
        # The first request stores its answer in the transaction that claimed the key,
        # so this is only a key expired and deleted between the two statements.
        raise Conflict("this Idempotency-Key changed state meanwhile; retry the request")
    if stored["request_hash"] != idempotency.request_hash:
        raise InvalidInput(
            "this Idempotency-Key was used with a different body",
            [
                FieldError(
                    field="header.Idempotency-Key",
                    reason="already used with a different request body",
                )
            ],
        )
    # The engine's JSON codec hands jsonb back already decoded.
    return Answer(stored["status"], dict(stored["response"]), replayed=True)
