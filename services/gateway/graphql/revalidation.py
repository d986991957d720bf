"""GraphQL answers the gateway built before, reused while the services say they still hold.

Dashboards post the very same operation every few seconds. The metrics service tags
each answer with an ETag; the gateway remembers, per request body and caller's token,
the answer it sent and the tags it built it from (``RememberAnswers``, a schema
extension, once the operation ran without errors). When that body comes again with
that token, ``RememberedGraphql`` asks each service again with ``If-None-Match`` and,
if every one answers 304, sends the remembered bytes without running GraphQL at all.

The services check the caller's token, scopes, grants and limits on the conditional
request exactly as on any other, and the gateway its revocations first, so a caller
who lost access gets the error, never the remembered answer: anything but 304 runs the
operation as usual.

Identical requests that arrive together (a wall of dashboards, an ERP's workers) share
one confirmation (``Confirmations``), but never one that began before they arrived.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import httpx
import orjson
from graphql import DocumentNode, ExecutionResult, FieldNode, OperationDefinitionNode
from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from strawberry.extensions import SchemaExtension
from strawberry.types.graphql import OperationType

from services.gateway.graphql.context import Context, UpstreamCall
from shared.auth import current_principal
from shared.errors import InsufficientScope, Unauthenticated
from shared.input_guard import read_body, replay
from shared.lru import Lru
from shared.negotiation import list_header, vary_on
from shared.scopes import KPI_READ
from shared.service import is_json

log = logging.getLogger(__name__)

MAX_REMEMBERED = 512
# Bigger answers are built again each time rather than held in memory.
MAX_REMEMBERED_BYTES = 512 * 1024


@dataclass(frozen=True)
class Remembered:
    calls: tuple[UpstreamCall, ...]
    body: bytes


class AnswerMemory(Lru[bytes, Remembered]):
    def __init__(self, capacity: int = MAX_REMEMBERED) -> None:
        super().__init__(capacity)


MEMORY = AnswerMemory()


def remembered_as(body: bytes, authorization: str, content_type: str) -> bytes:
    """The key of a request: its exact body, read with the caller's token."""
    digest = hashlib.blake2b(body, digest_size=32)
    digest.update(b"\0" + authorization.encode() + b"\0" + content_type.encode())
    return digest.digest()


async def still_current(http: httpx.AsyncClient, authorization: str, call: UpstreamCall) -> bool:
    try:
        response = await http.get(
            call.url,
            headers={
                "Authorization": authorization,
                "Accept": "application/json",
                "If-None-Match": call.etag,
            },
        )
    except httpx.HTTPError as exc:
        log.warning("revalidation failed: %s: %s", type(exc).__name__, exc)
        return False
    return response.status_code == 304


# Root fields answered only from services' tagged GETs: an answer that read anything
# else (a field resolved in the gateway, say) could change with no 304 to tell.
REMEMBERABLE_FIELDS = frozenset({"kpis", "__typename"})


def _only_remote_fields(document: DocumentNode | None, operation_name: str | None) -> bool:
    if document is None:
        return False
    operations = [
        d
        for d in document.definitions
        if isinstance(d, OperationDefinitionNode)
        and (operation_name is None or (d.name is not None and d.name.value == operation_name))
    ]
    if len(operations) != 1:
        return False
    return all(
        isinstance(selection, FieldNode) and selection.name.value in REMEMBERABLE_FIELDS
        for selection in operations[0].selection_set.selections
    )


class RememberAnswers(SchemaExtension):
    """Remembers a query's answer with the tagged calls its resolvers made."""

    memory = MEMORY

    async def on_execute(self) -> AsyncIterator[None]:
        execution = self.execution_context
        context = execution.context
        if (
            execution.operation_type is not OperationType.QUERY
            or not isinstance(context, Context)
            or not _only_remote_fields(execution.graphql_document, execution.operation_name)
        ):
            yield
            return
        context.upstream_calls = []
        yield
        result = execution.result
        calls, context.upstream_calls = context.upstream_calls, None
        if (
            isinstance(result, ExecutionResult)
            and not result.errors
            and isinstance(result.data, dict)
            and calls
            and all(call.etag for call in calls)
        ):
            # What Strawberry sends for a result without errors or extensions.
            body = orjson.dumps({"data": result.data})
            if len(body) > MAX_REMEMBERED_BYTES:
                return
            request = context.request
            if request.method != "POST":
                # Only POSTs are answered from memory; a GET's query is in its URL, and
                # its empty body would stand for every GET of the token.
                return
            key = remembered_as(
                await request.body(),
                context.authorization,
                request.headers.get("content-type", ""),
            )
            self.memory.put(key, Remembered(tuple(calls), body))


@dataclass
class _Line:
    """The confirmation of one remembered answer on the wire, and the one after it."""

    running: asyncio.Future[Remembered | None]
    following: asyncio.Future[Remembered | None] | None = None


class Confirmations:
    """At most one confirmation per remembered answer at a time, shared by its waiters.

    A request never takes the verdict of a check that began before it arrived: that
    check may have been answered just before the data changed. It waits instead for
    the following check, which starts the moment the running one ends and serves
    every request that arrived meanwhile. Twenty clients asking the same question
    thus cost the services about two checks a round trip instead of twenty, and each
    answer is still confirmed after its request came in.
    """

    def __init__(self) -> None:
        self._lines: dict[bytes, _Line] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.checks = 0

    async def confirm(
        self, key: bytes, check: Callable[[], Awaitable[Remembered | None]]
    ) -> Remembered | None:
        """The remembered answer if a check begun after this call confirms it, else None."""
        loop = asyncio.get_running_loop()
        line = self._lines.get(key)
        if line is None:
            line = self._lines[key] = _Line(loop.create_future())
            task = loop.create_task(self._run(key, line, check))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            verdict = line.running
        else:
            if line.following is None:
                line.following = loop.create_future()
            verdict = line.following
        # A waiter that goes away must not cancel the check the others wait for.
        return await asyncio.shield(verdict)

    async def _run(
        self, key: bytes, line: _Line, check: Callable[[], Awaitable[Remembered | None]]
    ) -> None:
        try:
            while True:
                self.checks += 1
                try:
                    found = await check()
                except Exception:
                    log.exception("confirming a remembered answer failed")
                    found = None
                line.running.set_result(found)
                if line.following is None:
                    return
                line.running, line.following = line.following, None
        finally:
            del self._lines[key]
            for waiting in (line.running, line.following):
                if waiting is not None and not waiting.done():
                    waiting.set_result(None)


NOT_UTF8 = orjson.dumps(
    {
        "errors": [
            {
                "message": "the request body is not UTF-8 JSON",
                "extensions": {"code": "BAD_USER_INPUT"},
            }
        ]
    }
)


class RememberedGraphql:
    """``POST /graphql`` in front of the GraphQL route: remembered answers that are
    still current go out at once; every other request goes on to ``graphql``."""

    def __init__(
        self,
        graphql: ASGIApp,
        memory: AnswerMemory = MEMORY,
        confirmations: Confirmations | None = None,
    ) -> None:
        self.graphql = graphql
        self.memory = memory
        self.confirmations = confirmations or Confirmations()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body, complete = await read_body(receive)
        if not complete:
            return  # the client went away before its request was whole
        try:
            body.decode("utf-8")
        except UnicodeDecodeError:
            await _send_json(send, NOT_UTF8, status=400)
            return
        scope = _typed_as_json(scope)
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        if scope["method"] == "POST" and _json_but_no_object(body, headers.get("content-type", "")):
            await _refuse(scope, send, NOT_AN_OBJECT)
            return
        authorization = headers.get("authorization", "")
        key = remembered_as(body, authorization, headers.get("content-type", ""))
        if key in self.memory and await _token_still_good(scope):
            http: httpx.AsyncClient = scope["app"].state.http

            async def check() -> Remembered | None:
                return await self._current(http, authorization, key)

            confirmed = await self.confirmations.confirm(key, check)
            if confirmed is not None:
                await _send_json(send, confirmed.body)
                return
        await self.graphql(scope, replay(body, receive), _errors_as_json(scope, send))

    async def _current(
        self, http: httpx.AsyncClient, authorization: str, key: bytes
    ) -> Remembered | None:
        """The answer remembered under ``key`` if every service still holds it; an
        answer they no longer hold is forgotten."""
        remembered = self.memory.get(key)
        if remembered is None:
            return None
        checks = [still_current(http, authorization, c) for c in remembered.calls]
        if all(await asyncio.gather(*checks)):
            return remembered
        if self.memory.get(key) is remembered:
            self.memory.pop(key)
        return None


async def _token_still_good(scope: Scope) -> bool:
    """Whether the gateway still takes the caller's token. The services check a token's
    signature, scopes and grants on the conditional request, but only the gateway keeps
    revocations: a token revoked since (a sign-in ended, a user's limits changed) must
    get no answer from memory. Verified tokens are cached, so this costs no RSA check."""
    try:
        await current_principal(Request(scope))
    except Unauthenticated:
        return False
    return True


# Strawberry's words for a body of another type than JSON (or form data), for a
# mutation sent by GET, and for variables that are no JSON (on a GET, in the query).
UNSUPPORTED_CONTENT_TYPE = "Unsupported content type"
NOT_BY_GET = "are not allowed when using GET"
NOT_JSON = "Unable to parse request body as JSON"


class GraphqlOverGet:
    """``GET /graphql``: the same operation as a POST (or GraphiQL's page), with the
    refusals as GraphQL errors in JSON, as over POST."""

    def __init__(self, graphql: ASGIApp) -> None:
        self.graphql = graphql

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def varying_on_accept(message: Message) -> None:
            # GraphiQL's page or a JSON answer, by Accept: a cache must know.
            if message["type"] == "http.response.start":
                vary_on(MutableHeaders(scope=message), "Accept")
            await send(message)

        scope = _on_one_line(scope, "accept")
        accept = Headers(scope=scope).get("accept")
        if accept is not None:
            # Media types are read in any case (RFC 9110 §8.3.1); GraphQL looks for
            # "text/html" as written.
            scope = _with_header(scope, "accept", accept.lower())
        await self.graphql(scope, receive, _errors_as_json(scope, varying_on_accept))


def _with_header(scope: Scope, name: str, value: str) -> Scope:
    """The request with header ``name`` (lower case) on one line holding ``value``."""
    raw = name.encode("latin-1")
    others = [(key, held) for key, held in scope["headers"] if key != raw]
    return {**scope, "headers": [*others, (raw, value.encode("latin-1"))]}


def _on_one_line(scope: Scope, name: str) -> Scope:
    """The request with a list header sent on several lines as the one line they make
    (RFC 9110 §5.3): GraphQL reads only the first."""
    headers = Headers(scope=scope)
    if len(headers.getlist(name)) < 2:
        return scope
    return _with_header(scope, name, list_header(headers, name))


def _typed_as_json(scope: Scope) -> Scope:
    """A body sent without a type, or as a JSON type in any case or a structured one
    (``+json``), read as JSON, as every REST route reads it; GraphQL reads only
    ``application/json``, written so."""
    sent = Headers(scope=scope).get("content-type")
    media = sent.split(";")[0].strip().lower() if sent is not None else ""
    if media and not is_json(media):
        # Another type, refused (415) as on REST routes: GraphQL would take any type
        # holding "application/json" (application/jsonx) as JSON.
        if "application/json" in media:
            return _with_header(scope, "content-type", "application/octet-stream")
        return scope
    if media == "application/json" and sent is not None and sent.startswith("application/json"):
        return scope
    # None, empty (as REST routes read it), or JSON written otherwise.
    return _with_header(scope, "content-type", "application/json")


def _refused_request(reason: str, method: str) -> tuple[int, str, list[tuple[bytes, bytes]]]:
    """The status, message and extra headers of a request GraphQL could not take."""
    if reason == UNSUPPORTED_CONTENT_TYPE:
        return 415, reason, []
    if reason.endswith(NOT_BY_GET):
        # GraphQL over HTTP: an operation that writes is never run by a GET.
        return 405, f"{reason}; send it by POST", [(b"allow", b"POST")]
    if reason == NOT_JSON and method in ("GET", "HEAD"):
        return 400, "the variables or extensions parameter is not a JSON object", []
    return 400, reason or "bad request", []


def _errors_as_json(scope: Scope, send: Send) -> Send:
    """GraphQL's own refusals of a request it cannot read (no query, no JSON) come as
    plain text; clients read JSON, so they go out as GraphQL errors, BAD_USER_INPUT.
    Who may call is answered first, as everywhere: without a valid token such a request
    is 401; a body of another type is 415."""
    refused: Message | None = None

    async def sending(message: Message) -> None:
        nonlocal refused
        if message["type"] == "http.response.start":
            content_type = dict(message.get("headers", [])).get(b"content-type", b"")
            if message["status"] == 400 and content_type.startswith(b"text/plain"):
                refused = message
                return
        elif refused is not None and message["type"] == "http.response.body":
            await _refuse(scope, send, message.get("body", b"").decode("utf-8", "replace"))
            return
        await send(message)

    return sending


async def _refuse(scope: Scope, send: Send, reason: str) -> None:
    """Answers a request GraphQL cannot read: 401 without a valid token, 403 for one
    without ``kpi:read`` (what it asks cannot be read, so neither can it be found to ask
    for the schema alone), else the ``reason`` as a GraphQL error, BAD_USER_INPUT."""
    try:
        (await current_principal(Request(scope))).require(KPI_READ)
    except (Unauthenticated, InsufficientScope) as exc:
        error = {"message": exc.detail, "extensions": exc.graphql_extensions()}
        challenge = [(k.lower().encode(), v.encode()) for k, v in exc.headers.items()]
        await _send_json(send, orjson.dumps({"errors": [error]}), exc.status, extra=challenge)
        return
    status, shown, extra = _refused_request(reason, scope["method"])
    error = {"message": shown, "extensions": {"code": "BAD_USER_INPUT"}}
    await _send_json(send, orjson.dumps({"errors": [error]}), status, extra=extra)


NOT_AN_OBJECT = "the request body must be a JSON object with a query"


def _json_but_no_object(body: bytes, content_type: str) -> bool:
    """A JSON body that is a string, number, boolean or null: strawberry reads every
    JSON body as an object and failed on these with a server error (a frontend's
    ``JSON.stringify`` of a body already a string). A list is batching, refused by
    strawberry itself; a body that is no JSON, strawberry refuses too."""
    if content_type.split(";")[0].strip().lower() != "application/json":
        return False
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        # NaN, Infinity and 1e999 alone are no JSON to orjson, but a frontend's
        # JSON.stringify of a number; a body nested too deep is no JSON to either.
        try:
            parsed = json.loads(body)
        except (ValueError, RecursionError):
            return False
    return not isinstance(parsed, dict | list)


async def _send_json(
    send: Send, body: bytes, status: int = 200, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *(extra or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
