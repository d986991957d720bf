"""GraphQL answers the gateway built before, reused while the services say they still hold.

Dashboards send the same operation every few seconds. The metrics service tags each
answer with an ETag; the gateway remembers, per operation, variables and caller's
token, the answer it built and the tags it built it from. The next time it asks each
service again with ``If-None-Match``: if every one answers 304 the remembered answer is
returned without resolving a field. The services check the caller's token, scopes,
grants and limits on that conditional request exactly as on any other, so a caller
who lost access gets the error, never the remembered answer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
from graphql import ExecutionResult
from strawberry.extensions import SchemaExtension
from strawberry.types.graphql import OperationType

from services.gateway.graphql.context import Context, UpstreamCall
from shared.lru import Lru

log = logging.getLogger(__name__)

MAX_REMEMBERED = 512
# Bigger answers are rebuilt each time rather than held in memory.
MAX_REMEMBERED_BYTES = 512 * 1024


@dataclass(frozen=True)
class Remembered:
    calls: tuple[UpstreamCall, ...]
    data: dict[str, Any]


class AnswerMemory(Lru[bytes, Remembered]):
    def __init__(self, capacity: int = MAX_REMEMBERED) -> None:
        super().__init__(capacity)


MEMORY = AnswerMemory()


async def still_current(context: Context, call: UpstreamCall) -> bool:
    try:
        response = await context.http.get(
            call.url,
            params=call.params,
            headers={
                "Authorization": context.authorization,
                "Accept": "application/json",
                "If-None-Match": call.etag,
            },
        )
    except httpx.HTTPError as exc:
        log.warning("revalidation failed: %s: %s", type(exc).__name__, exc)
        return False
    return response.status_code == 304


class RevalidatedAnswers(SchemaExtension):
    """Answers a query from ``MEMORY`` when every service it asked says nothing changed."""

    memory = MEMORY

    def _key(self) -> bytes | None:
        execution = self.execution_context
        context = execution.context
        if execution.operation_type is not OperationType.QUERY or not isinstance(context, Context):
            return None
        return orjson.dumps(
            [
                execution.query,
                execution.operation_name,
                execution.variables,
                context.authorization,
            ],
            option=orjson.OPT_SORT_KEYS,
        )

    async def on_execute(self) -> AsyncIterator[None]:
        execution = self.execution_context
        key = self._key()
        if key is None:
            yield
            return
        context: Context = execution.context
        remembered = self.memory.get(key)
        if remembered is not None:
            checks = [still_current(context, call) for call in remembered.calls]
            if all(await asyncio.gather(*checks)):
                execution.result = ExecutionResult(data=remembered.data, errors=None)
                yield
                return
            self.memory.pop(key)
        context.upstream_calls = []
        yield
        result = execution.result
        calls = context.upstream_calls
        context.upstream_calls = None
        if (
            isinstance(result, ExecutionResult)
            and not result.errors
            and isinstance(result.data, dict)
            and calls
            and all(call.etag for call in calls)
            and sum(call.size for call in calls) <= MAX_REMEMBERED_BYTES
        ):
            self.memory.put(key, Remembered(tuple(calls), result.data))
