"""Accepting a pushed batch: validate it whole, drop duplicates, write the outbox."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import orjson

from services.ingest.events.repository import EventRepository
from shared.errors import Conflict, FieldError, InvalidInput, PayloadTooLarge
from shared.events import Event, topic_for, validate_batch
from shared.telemetry import inject_headers
from shared.time import utcnow

MAX_IDEMPOTENCY_KEY_LENGTH = 255


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]


def parse_body(raw: bytes, max_events: int) -> list[Any]:
    """The ``events`` list of a push body, or a 4xx naming what is wrong."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise InvalidInput(
            "the body is not valid JSON", [FieldError(field="body", reason="invalid JSON")]
        ) from None
    if not isinstance(body, dict) or not isinstance(body.get("events"), list):
        raise InvalidInput(
            "the body must be an object with an events list",
            [FieldError(field="events", reason="required: a list of events")],
        )
    events: list[Any] = body["events"]
    if len(events) > max_events:
        raise PayloadTooLarge(
            f"{len(events)} events in one request; at most {max_events} are accepted",
            [FieldError(field="events", reason=f"at most {max_events} events a request")],
        )
    if not events:
        raise InvalidInput(
            "the batch is empty", [FieldError(field="events", reason="at least one event")]
        )
    return events


def check_idempotency_key(key: str | None) -> str | None:
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


async def accept(
    repository: EventRepository,
    tenant_id: str,
    raw_body: bytes,
    parse: Callable[[bytes], list[Any]],
    idempotency_key: str | None,
    topic_prefix: str,
    first_row: int | None = None,
) -> Answer:
    """Stores a valid batch's new events in the outbox; the caller's transaction commits it.

    ``parse`` turns the body into raw events (JSON or CSV); ``first_row`` is the file
    line of the first event when the body is a file, so errors name lines too.
    """
    if idempotency_key is not None:
        request_hash = hashlib.sha256(raw_body).hexdigest()
        if not await repository.claim_idempotency_key(tenant_id, idempotency_key, request_hash):
            stored = await repository.stored_answer(tenant_id, idempotency_key)
            if stored is None or stored["status"] is None:
                raise Conflict("a request with this Idempotency-Key is still in progress")
            if stored["request_hash"] != request_hash:
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
            return Answer(stored["status"], dict(stored["response"]))

    events, errors = validate_batch(parse(raw_body))
    if errors:
        bad = len({e.index for e in errors})
        if first_row is not None:
            errors = [
                replace(e, row=None if e.index is None else e.index + first_row) for e in errors
            ]
        raise InvalidInput(f"{bad} invalid event(s); nothing was stored", errors)

    latest = _latest_per_event(events)
    accepted_ids = await repository.accept_versions(
        tenant_id, [e.event_id for e in latest], [e.version for e in latest]
    )
    accepted = [e for e in latest if e.event_id in accepted_ids]
    if accepted:
        ingested_at = utcnow().isoformat()
        traceparent = inject_headers().get("traceparent")
        await repository.add_to_outbox(
            [
                (
                    tenant_id,
                    e.event_id,
                    e.version,
                    e.type,
                    topic_for(e.type, topic_prefix),
                    _message(e, tenant_id, ingested_at),
                    traceparent,
                )
                for e in accepted
            ]
        )
    answer = Answer(202, {"accepted": len(accepted), "duplicates": len(events) - len(accepted)})
    if idempotency_key is not None:
        await repository.store_answer(tenant_id, idempotency_key, answer.status, answer.body)
    return answer
