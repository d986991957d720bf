"""The gateway's Kafka side of erasure: publish requests, record confirmations.

A request is published after the transaction that recorded it commits, so a
confirmation never arrives for an erasure the database does not hold yet. Requests
not confirmed by every service are published again every ``REPUBLISH_SECONDS``: a
lost publish, a broker restart (the embedded broker keeps its log in memory) or a
service that was down all end the same way, since erasing again is harmless.

The tracker also knows every erased tenant, from the erasure records: the gateway
takes no write of theirs, its own or for a service (see :func:`refuse_erased_writes`).
The services refuse them too, but only from memory, for as long as tokens live; a
service restarted meanwhile has forgotten them.
"""

from __future__ import annotations

import asyncio
import logging

from aiokafka.errors import KafkaError
from fastapi import Request

from services.gateway.config import Settings
from services.gateway.erasures import service
from shared.access import refuse_erased
from shared.auth import TokenRevoked, current_principal
from shared.db import Database
from shared.erasure import (
    ERASURE_DONE_TOPIC,
    ERASURE_TOPIC,
    ErasureDone,
    ErasureRequested,
    Publisher,
    Records,
    TopicListener,
    listener_group,
    readable,
)
from shared.errors import Unauthenticated
from shared.tasks import every, stop_task

log = logging.getLogger(__name__)

REPUBLISH_SECONDS = 30.0


class ErasureTracker:
    def __init__(
        self, db: Database, settings: Settings, republish_seconds: float = REPUBLISH_SECONDS
    ) -> None:
        self.db = db
        self.publisher = Publisher(settings)
        self.republish_seconds = republish_seconds
        self.listener = TopicListener(
            settings,
            ERASURE_DONE_TOPIC,
            listener_group(settings.topic_prefix, "gateway"),
            self.handle,
            name="gateway-erasure-confirmations",
        )
        self._sweeper: asyncio.Task[None] | None = None
        # Read again with every sweep, so erasures asked at another gateway count too.
        self.erased: set[str] = set()

    def __contains__(self, tenant_id: object) -> bool:
        return tenant_id in self.erased

    async def load_erased(self) -> None:
        async with self.db.session() as session:
            self.erased = await service.erased_tenant_ids(session)

    def start(self) -> None:
        self.listener.start()
        self._sweeper = every(
            self.republish_seconds,
            self._republish,
            "gateway-erasure-republish",
            "unfinished erasures",
        )

    async def stop(self) -> None:
        await stop_task(self._sweeper)
        await self.listener.stop()
        await self.publisher.close()

    async def publish(self, erasure_id: str, tenant_id: str) -> bool:
        """Asks every service to erase; False (logged) when the broker cannot take it now:
        the sweep publishes it again."""
        try:
            await self.publisher.send(
                ERASURE_TOPIC,
                tenant_id,
                ErasureRequested(erasure_id=erasure_id, tenant_id=tenant_id),
            )
        except KafkaError as exc:
            log.warning(
                "erasure request not published yet: %s",
                exc,
                extra={"fields": {"erasure_id": erasure_id, "tenant": tenant_id}},
            )
            return False
        return True

    async def handle(self, records: Records) -> None:
        for record in records:
            done = readable(ErasureDone, record, "erasure confirmation")
            if done is None:
                continue
            async with self.db.session() as session:
                erasure = await service.record_confirmation(session, done)
            if erasure is None:
                log.warning(
                    "confirmation of an unknown erasure ignored",
                    extra={"fields": {"erasure_id": done.erasure_id, "service": done.service}},
                )

    async def republish_pending(self) -> int:
        """One sweep: publishes again every erasure some service has not confirmed within
        ``republish_seconds``; returns how many were published."""
        async with self.db.session() as session:
            pending = await service.unfinished(session, self.republish_seconds)
        published = 0
        for erasure in pending:
            published += await self.publish(erasure.id, erasure.tenant_id)
        return published

    async def _republish(self) -> None:
        await self.republish_pending()
        await self.load_erased()


async def refuse_erased_writes(request: Request) -> None:
    """Route dependency: the caller, resolved once for the route. A revoked token is 401
    here, as only the gateway knows revocations; another bad token is left to the route,
    or the service it goes to. A write by an erased tenant is 403: its tokens still
    verify until they expire. A write naming another tenant, erased, is
    left to the route's grant check: to a caller without a grant it is a tenant out of
    reach, as one that never was."""
    if "authorization" not in request.headers:
        return
    try:
        principal = await current_principal(request)
    except Unauthenticated as exc:
        if isinstance(exc, TokenRevoked):
            raise
        return
    if request.method != "GET":
        refuse_erased(request, principal.tenant_id)
