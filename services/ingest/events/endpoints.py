from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import JSONResponse

from services.ingest.events import service
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
            key,
            settings.max_events_per_request,
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
