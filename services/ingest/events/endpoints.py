from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import JSONResponse

from services.ingest.events import service
from services.ingest.events.csv_upload import FIRST_DATA_ROW, parse_csv
from services.ingest.events.repository import EventRepository
from services.ingest.events.schemas import (
    PUSH_REQUEST_SCHEMA,
    ErrorBody,
    OutboxStatus,
    PushAccepted,
)
from shared.auth import Principal, require_scope
from shared.db import Database

router = APIRouter(prefix="/v1/events", tags=["events"])
csv_router = APIRouter(tags=["events"])


@router.post(
    "",
    status_code=202,
    response_model=PushAccepted,
    openapi_extra={"requestBody": PUSH_REQUEST_SCHEMA},
    responses={
        413: {"model": ErrorBody, "description": "More than 5,000 events"},
        422: {"model": ErrorBody, "description": "Invalid events, each by index and field"},
    },
)
async def push_events(
    request: Request,
    principal: Annotated[Principal, Depends(require_scope("ingest:write"))],
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> JSONResponse:
    """Accepts a batch of canonical events; 202 once they are durable in the outbox.

    The whole batch is refused when any event is invalid. The same ``event_id`` with
    the same or a lower ``version`` counts as a duplicate and stores nothing.
    """
    tenant_id = principal.require_tenant()
    key = service.check_idempotency_key(idempotency_key)
    raw = await request.body()
    db: Database = request.app.state.db
    settings = request.app.state.settings
    async with db.raw_connection() as conn, conn.transaction():
        answer = await service.accept(
            EventRepository(conn),
            tenant_id,
            raw,
            lambda body: service.parse_body(body, settings.max_events_per_request),
            key,
            settings.topic_prefix,
        )
    return JSONResponse(answer.body, status_code=answer.status)


@router.get("/outbox", response_model=OutboxStatus)
async def outbox_status(
    request: Request,
    principal: Annotated[Principal, Depends(require_scope("ingest:write"))],
) -> OutboxStatus:
    """How many of this tenant's accepted events are still waiting for the broker."""
    db: Database = request.app.state.db
    async with db.raw_connection() as conn:
        pending = await EventRepository(conn).pending_count(principal.require_tenant())
    return OutboxStatus(pending=pending)


@csv_router.post(
    "/v1/events:csv",
    status_code=202,
    response_model=PushAccepted,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"text/csv": {"schema": {"type": "string", "format": "binary"}}},
        }
    },
    responses={
        413: {"model": ErrorBody, "description": "More than 5,000 rows"},
        422: {"model": ErrorBody, "description": "Invalid rows, each by index, row and field"},
    },
)
async def upload_events_csv(
    request: Request,
    principal: Annotated[Principal, Depends(require_scope("ingest:write"))],
    event_type: Annotated[str, Query(alias="type", description="The event type of every row")],
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> JSONResponse:
    """The same push as ``POST /v1/events``, from a CSV file of one event type.

    Errors name the file line (``row``, the header being line 1) as well as the index.
    """
    tenant_id = principal.require_tenant()
    key = service.check_idempotency_key(idempotency_key)
    raw = await request.body()
    db: Database = request.app.state.db
    settings = request.app.state.settings
    # The type is part of what the key protects: the same file as another type differs.
    fingerprinted = event_type.encode() + b"\n" + raw
    async with db.raw_connection() as conn, conn.transaction():
        answer = await service.accept(
            EventRepository(conn),
            tenant_id,
            fingerprinted,
            lambda _: parse_csv(raw, event_type, settings.max_events_per_request),
            key,
            settings.topic_prefix,
            first_row=FIRST_DATA_ROW,
        )
    return JSONResponse(answer.body, status_code=answer.status)
