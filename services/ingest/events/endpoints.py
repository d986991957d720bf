"""The push API: ``POST /v1/events`` (JSON), ``POST /v1/events:csv`` and the outbox status."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Annotated, TypeVar

import anyio
import asyncpg
from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import JSONResponse

from services.ingest.config import Settings
from services.ingest.events import service
from services.ingest.events.csv_upload import UTF8, CsvBatch, columns_described, parse_csv
from services.ingest.events.repository import EventRepository
from services.ingest.events.schemas import PUSH_REQUEST_SCHEMA, OutboxStatus, PushAccepted
from services.ingest.outbox.repository import OutboxRepository
from shared.access import Access, hold_unerased, require_access
from shared.auth import current_principal
from shared.db import Database
from shared.errors import InvalidInput
from shared.events import EVENT_TYPES, Event
from shared.input_guard import CSV_CHARSETS, declared_charset
from shared.openapi import ErrorBody
from shared.service import is_json, media_type, require_json_body, unsupported_media_type

router = APIRouter(prefix="/v1/events", tags=["events"])
# The limits the service checks itself (service.py), naming ``header.Idempotency-Key``.
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        description="1 to 255 characters; the same key with the same body replays the "
        "first answer (`Idempotent-Replayed: true`), with another body is 422",
        json_schema_extra={"minLength": 1, "maxLength": 255},
    ),
]
REPLAY_RACE = {
    "model": ErrorBody,
    "description": "The Idempotency-Key's stored answer expired as it was read; retry",
}
csv_router = APIRouter(tags=["events"])

ACCEPTED = {
    "description": "Durable in the outbox",
    "headers": {
        "Idempotent-Replayed": {
            "description": "`true` when this is the stored answer of an earlier request "
            "under the same Idempotency-Key (this one stored nothing)",
            "schema": {"type": "string", "enum": ["true"]},
        }
    },
}


@router.post(
    "",
    status_code=202,
    response_model=PushAccepted,
    openapi_extra={"requestBody": PUSH_REQUEST_SCHEMA},
    responses={
        202: ACCEPTED,
        409: REPLAY_RACE,
        413: {"model": ErrorBody, "description": "More than 5,000 events"},
        422: {"model": ErrorBody, "description": "Invalid events, each by index and field"},
    },
)
async def push_events(
    request: Request,
    access: Annotated[Access, Depends(require_access("ingest:write"))],
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """Accepts a batch of canonical events; 202 once they are durable in the outbox.

    The whole batch is refused when any event is invalid. The same ``event_id`` with
    the same or a lower ``version`` counts as a duplicate and stores nothing. With an
    ``Idempotency-Key`` (at most 255 characters), a replay gets the first answer back
    and stores nothing; the same key with another body is refused with 422.
    """
    require_json_body(request)
    key = service.check_idempotency_key(idempotency_key)
    raw = await request.body()
    settings: Settings = request.app.state.settings

    def read() -> tuple[list[Event], str]:
        raw_events = service.parse_body(raw, settings.max_events_per_request)
        events = service.validate(raw_events)
        return events, service.json_fingerprint(raw_events) if key else ""

    # Parsed and validated before a connection is taken: the pool serves only I/O.
    events, request_hash = await _off_the_loop(len(raw), read)
    service.check_stores(events, access)
    idempotency = await _idempotency(request, access, key, request_hash) if key else None
    return await _store(request, access, events, idempotency)


# Past this size a body is parsed and validated in a worker thread: a 5,000-event
# batch takes half a second of CPU, which every other request (another tenant's push
# of one event, a probe) would otherwise wait behind.
OFF_LOOP_BYTES = 256 * 1024
Read = TypeVar("Read")


async def _off_the_loop(size: int, work: Callable[[], Read]) -> Read:
    if size <= OFF_LOOP_BYTES:
        return work()
    return await anyio.to_thread.run_sync(work)


async def _idempotency(
    request: Request, access: Access, key: str, request_hash: str
) -> service.Idempotency:
    """The caller's key: the principal was verified on the way in (``require_access``);
    under a grant, the agency's too, whose erasure deletes it."""
    principal = await current_principal(request)
    acting = principal.tenant_id if access.grant_id else None
    return service.Idempotency(service.caller_of(principal), key, request_hash, acting)


async def _store(
    request: Request,
    access: Access,
    events: list[Event],
    idempotency: service.Idempotency | None,
    rows: Sequence[int] | None = None,
) -> JSONResponse:
    """Stores a valid batch; committed before the 202 goes out: the answer means durable.

    Two pushes naming the same events in different orders may deadlock; the one the
    database gave up on runs again (``Database.transact``) instead of failing."""
    settings: Settings = request.app.state.settings
    db: Database = request.app.state.db

    async def store(conn: asyncpg.Connection) -> service.Answer:
        await hold_unerased(request, conn, access.tenant_id)
        await EventRepository(conn).hold_pushes(access.tenant_id, alone=access.limited)
        await service.check_replaced(
            EventRepository(conn), access.tenant_id, events, access, rows=rows
        )
        return await service.accept(
            EventRepository(conn),
            OutboxRepository(conn),
            access.tenant_id,
            events,
            idempotency,
            settings.topic_prefix,
            rows=rows,
        )

    return (await db.transact(store)).response()


@router.get("/outbox", response_model=OutboxStatus)
async def outbox_status(
    request: Request,
    access: Annotated[Access, Depends(require_access("ingest:write"))],
) -> OutboxStatus:
    """How many of this tenant's accepted events are still waiting for the broker (of
    the stores and marketplaces the caller may reach, when it is limited to some)."""
    db: Database = request.app.state.db
    async with db.raw_connection() as conn:
        pending = await OutboxRepository(conn).pending_for(
            access.tenant_id, access.stores, access.marketplaces
        )
    return OutboxStatus(pending=pending)


CSV_UPLOAD_DESCRIPTION = f"""The same push as `POST /v1/events`, from a CSV file of one event type
(`type`), in UTF-8 (or GB18030, GBK, GB2312 when the Content-Type's charset says so).

One header row naming columns in any case, spaces standing for underscores (`Event ID`).
Empty cells are absent fields; `version` defaults to 1 and `occurred_at` to the row's own
timestamp or date. A money field is its amount column plus `<field>_currency` or one
`currency` column for the whole row. A `type` column, if present, must name the upload's
type in every row. Flags take true/false, 1/0 or yes/no. Errors name the file line
(`row`, the header being line 1) as well as the `index`.

Columns of each type (bold: required):

{columns_described()}
"""


@csv_router.post(
    "/v1/events:csv",
    status_code=202,
    response_model=PushAccepted,
    description=CSV_UPLOAD_DESCRIPTION,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"text/csv": {"schema": {"type": "string", "format": "binary"}}},
        }
    },
    responses={
        202: ACCEPTED,
        409: REPLAY_RACE,
        413: {"model": ErrorBody, "description": "More than 5,000 rows"},
        415: {
            "model": ErrorBody,
            "description": "A JSON body or a form upload (multipart/form-data): send the "
            "file itself; or a charset other than UTF-8 or GB18030 (GBK, GB2312)",
        },
        422: {"model": ErrorBody, "description": "Invalid rows, each by index, row and field"},
    },
)
async def upload_events_csv(
    request: Request,
    access: Annotated[Access, Depends(require_access("ingest:write"))],
    event_type: Annotated[
        str,
        Query(
            alias="type",
            description="The event type of every row",
            json_schema_extra={"enum": list(EVENT_TYPES)},
        ),
    ],
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """The same push as ``POST /v1/events``, from a CSV file of one event type."""
    media = media_type(request)
    if is_json(media) or media == "text/json" or media.startswith("multipart/"):
        # A JSON push sent here by mistake is never read as CSV, nor a form's upload
        # (`curl -F file=@x.csv`), whose boundary would be taken for the header. curl's
        # default form type is taken: it is how `--data-binary @file.csv` sends a file.
        raise unsupported_media_type(media, "text/csv (the file itself as the body)")
    key = service.check_idempotency_key(idempotency_key)
    raw = await request.body()
    settings: Settings = request.app.state.settings

    # What the input guard let through: absent, a name of UTF-8, or of GB18030.
    charset = declared_charset(request.headers.get("content-type", "")) or UTF8
    encoding = CSV_CHARSETS.get(charset, UTF8)

    def read() -> tuple[CsvBatch, list[Event], str]:
        batch = parse_csv(raw, event_type, settings.max_events_per_request, encoding)
        try:
            events = service.validate(batch.events, rows=batch.rows)
        except InvalidInput as refused:
            raise batch.in_file_terms(refused) from None
        # The file as read, so a retry saved with other line endings or without its BOM
        # is the same request; its type is part of it.
        return batch, events, service.json_fingerprint([event_type, batch.events]) if key else ""

    batch, events, request_hash = await _off_the_loop(len(raw), read)
    service.check_stores(events, access, rows=batch.rows)
    idempotency = await _idempotency(request, access, key, request_hash) if key else None
    return await _store(request, access, events, idempotency, rows=batch.rows)
