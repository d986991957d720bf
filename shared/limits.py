"""Request body size limits and per-client rate limits, for every service's app.

One pure-ASGI middleware (``build_app`` installs it inside tracing): a body over the
limit gets 413 ``payload_too_large``, a client over its rate gets 429 ``rate_limited``
with ``Retry-After``, both in the shared error body. Buckets live in this process's
memory, so a service run as N processes lets a client through N times the rate.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.access import EFFECTIVE_GRANT_PATH
from shared.auth import Principal
from shared.errors import (
    BadRequest,
    FieldError,
    HeadersTooLarge,
    LengthRequired,
    LodestarError,
    PayloadTooLarge,
    RateLimited,
    RequestTimeout,
    Unauthenticated,
    UpstreamUnavailable,
)
from shared.input_guard import GRAPHQL_PATH
from shared.revocations import REVOKED_TOKENS_PATH
from shared.turns import KeyedTurns

# Probes must answer however busy a client is; the services read revoked tokens every
# second from one address.
UNLIMITED_PATHS = frozenset({"/healthz", "/readyz", REVOKED_TOKENS_PATH})
# A service asks for an agency's grant with the agency's own token, once for each
# request of it the gateway counted already: those lookups fill a bucket of their own
# (as large), so they never halve the agency's rate, and calling the path directly
# buys no more than any route.
OWN_BUCKET_PATHS = {EFFECTIVE_GRANT_PATH: "grants"}
OAUTH_PREFIX = "/oauth/"
# The one OAuth route that takes a bearer token: its caller is that token's client.
USERINFO_PATH = "/oauth/userinfo"
# Keys are kept in memory: a longer client id is not believed, and the peer address is used.
MAX_CLIENT_ID_LENGTH = 200
DEFAULT_MAX_CLIENTS = 10_000


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """Token buckets by client key, in this process's memory.

    A key may make ``burst`` requests at once and ``rate`` a second sustained; a rate of
    0 lets everything through. At most ``max_clients`` buckets are kept: buckets that
    have filled up again are dropped first (a new bucket is the same, so nothing is
    lost), then the least recently used. ``clock`` is seconds on a monotonic scale.
    """

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        max_clients: int = DEFAULT_MAX_CLIENTS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = rate
        self.burst = burst
        self.max_clients = max_clients
        self.clock = clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def __len__(self) -> int:
        return len(self._buckets)

    def acquire(self, key: str) -> int:
        """Takes one request from ``key``'s bucket. Returns 0 when the request may pass,
        otherwise the whole seconds (at least 1) until one more would."""
        if not self.enabled:
            return 0
        now = self.clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(float(self.burst), now)
        else:
            bucket.tokens = self._tokens(bucket, now)
            bucket.updated = now
            self._buckets.move_to_end(key)
        wait = 0
        if bucket.tokens >= 1:
            bucket.tokens -= 1
        else:
            wait = max(1, math.ceil((1 - bucket.tokens) / self.rate))
        self._evict(now)
        return wait

    def _tokens(self, bucket: _Bucket, now: float) -> float:
        elapsed = max(0.0, now - bucket.updated)
        return min(float(self.burst), bucket.tokens + elapsed * self.rate)

    def _evict(self, now: float) -> None:
        # Oldest first, while full again: idle clients cost no memory after burst/rate s.
        while self._buckets:
            key, oldest = next(iter(self._buckets.items()))
            if self._tokens(oldest, now) < self.burst:
                break
            del self._buckets[key]
        # Past the cap even a client in debt is forgotten: memory stays bounded.
        while len(self._buckets) > self.max_clients:
            self._buckets.popitem(last=False)


class ClientVerifier(Protocol):
    """What tells a request's client: the app's token verifier."""

    async def verify(self, token: str) -> Principal: ...


async def client_key(scope: Scope, verifier: ClientVerifier | None) -> str:
    """The key a request is limited by: the client of its bearer token once the token
    verifies (``client_id``, or ``azp`` of an external provider's), and for a user's
    token that user of the client, else the peer
    address. A claim read without checking the signature would let anyone who knows a
    client's id (public clients' are in every sign-in link) spend that client's bucket
    and lock it out. The verified token is remembered, so the route checks it again for
    free. The sign-in endpoints (``/oauth/``) always go by address: a bearer header
    there must not buy a bucket of its own."""
    path = scope["path"]
    if verifier is not None and (not path.startswith(OAUTH_PREFIX) or path == USERINFO_PATH):
        token = _bearer(scope)
        if token is not None:
            principal: Principal | None
            try:
                principal = await verifier.verify(token)
            except (LodestarError, ValueError):
                # Not a token (401 at the route): the address pays for it.
                principal = None
            if principal is not None and len(principal.client_id) <= MAX_CLIENT_ID_LENGTH:
                if principal.subject and principal.subject != principal.client_id:
                    # A person signed in through an application (a dashboard, an agency
                    # portal that everyone of the agency uses): one user asking too fast
                    # must not stop the others.
                    return f"user:{principal.client_id} {principal.subject[:MAX_CLIENT_ID_LENGTH]}"
                return f"client:{principal.client_id}"
    peer = scope.get("client")
    return f"ip:{peer[0] if peer else 'unknown'}"


def _bearer(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.strip().partition(b" ")
            if scheme.lower() != b"bearer" or not token.strip():
                return None
            try:
                return token.strip().decode("ascii")
            except UnicodeDecodeError:
                return None
    return None


def _path_body_limit(path: str) -> int | None:
    if path.startswith(OAUTH_PREFIX):
        return MAX_FORM_BODY_BYTES
    if path == GRAPHQL_PATH:
        return LARGE_BODY_BYTES
    return None


def _has_body(scope: Scope) -> bool:
    headers = dict(scope["headers"])
    return b"transfer-encoding" in headers or (_declared_length(scope) or 0) > 0


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                # Not a number: the streamed bytes are counted all the same.
                return None
    return None


# A request declaring more than this many bytes is a large one: a push of thousands of
# events, which takes some 80 MB of a process to parse and check. An ERP pushing from
# four workers keeps its pace (two a client cost the ingest benchmark's four clients of
# one token 15% of their accepted rate). Only a client whose
# token verifies sends one (anyone else is answered 401 at once, its body unread: a slow
# body of no one held a turn for as long as it trickled); at most ``MAX_LARGE_BODIES``
# are read at once per process, ``MAX_LARGE_BODIES_PER_CLIENT`` of them one client's;
# the others wait, their bodies unread, up to ``LARGE_BODY_WAIT_SECONDS``, then get 503
# and Retry-After. A body that declares no length may not grow past one (411).
LARGE_BODY_BYTES = 1024 * 1024
MAX_LARGE_BODIES = 8
MAX_LARGE_BODIES_PER_CLIENT = 4
LARGE_BODY_WAIT_SECONDS = 30.0
# A body must arrive within this long, plus a second for each ``BODY_BYTES_A_SECOND`` it
# declares (chunked: up to the 1 MiB it may have), else 408: one trickled a byte a second
# held its turn for as long as it trickled, and eight of them every tenant's large pushes.
# Headers past this many bytes in all are 431: an access token carries at most 128,000,
# and no other header comes near (the server reads them before any limit of ours).
MAX_HEADER_BYTES = 256 * 1024
# The OAuth endpoints take forms of a few fields.
MAX_FORM_BODY_BYTES = 64 * 1024
BODY_GRACE_SECONDS = 10.0
BODY_BYTES_A_SECOND = 32 * 1024


class LimitsMiddleware:
    """Refuses bodies over ``max_body_bytes`` with 413 (0: no limit), by the declared
    Content-Length up front and by the bytes actually streamed, and clients over their
    rate with 429 and ``Retry-After``; reads few large bodies at once (see
    ``MAX_LARGE_BODIES``). ``render`` turns an error into its response."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        limiter: RateLimiter,
        max_body_bytes: int,
        render: Callable[[LodestarError, Scope], Response],
    ) -> None:
        self.app = app
        self.limiter = limiter
        self.max_body_bytes = max_body_bytes
        self.render = render
        self._large_bodies: asyncio.Semaphore | None = None
        self._large_by_client = KeyedTurns(MAX_LARGE_BODIES_PER_CLIENT)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        header_bytes = sum(len(name) + len(value) + 4 for name, value in scope["headers"])
        if header_bytes > MAX_HEADER_BYTES:
            too_large = HeadersTooLarge(
                f"the request's headers take {header_bytes} bytes, more than the "
                f"{MAX_HEADER_BYTES} taken",
                [FieldError(field="header", reason=f"at most {MAX_HEADER_BYTES} bytes in all")],
            )
            await self._refuse(too_large, scope, receive, send)
            return
        if scope.get("http_version") == "1.1" and not any(
            n == b"host" for n, _ in scope["headers"]
        ):
            # RFC 9112 §3.2: which site is asked for is not ours to guess.
            no_host = BadRequest(
                "an HTTP/1.1 request must name its host",
                [FieldError(field="header.Host", reason="required in HTTP/1.1")],
            )
            await self._refuse(no_host, scope, receive, send)
            return
        declared = _declared_length(scope)
        large = declared is not None and declared > LARGE_BODY_BYTES
        key: str | None = None
        if large or (self.limiter.enabled and scope["path"] not in UNLIMITED_PATHS):
            app = scope.get("app")
            verifier = getattr(app.state, "token_verifier", None) if app is not None else None
            key = await client_key(scope, verifier)
        if self.limiter.enabled and scope["path"] not in UNLIMITED_PATHS:
            assert key is not None
            bucket = OWN_BUCKET_PATHS.get(scope["path"])
            wait = self.limiter.acquire(f"{bucket}:{key}" if bucket else key)
            if wait:
                await self._refuse(RateLimited(wait), scope, receive, send)
                return
        if self.max_body_bytes and declared is not None and declared > self.max_body_bytes:
            await self._refuse(self._too_large(self.max_body_bytes), scope, receive, send)
            return
        if (path_limit := _path_body_limit(scope["path"])) and (declared or 0) > path_limit:
            # A client's credentials fit in a few hundred bytes, a GraphQL request in a
            # few kilobytes: told so, rather than to bring a token as a large body must
            # (and a document of megabytes held the gateway's event loop for seconds).
            await self._refuse(self._too_large(path_limit), scope, receive, send)
            return
        if not large:
            await self._call_reading(scope, receive, send)
            return
        assert key is not None
        if key.startswith("ip:"):  # no token that verifies
            refused = Unauthenticated(
                f"a request body over {LARGE_BODY_BYTES} bytes needs a valid access token"
            )
            await self._refuse(refused, scope, receive, send)
            return
        if self._large_bodies is None:
            self._large_bodies = asyncio.Semaphore(MAX_LARGE_BODIES)
        async with self._large_by_client.of(key) as own:
            await self._call_in_turn(own, scope, receive, send)

    async def _call_in_turn(
        self, own: asyncio.Semaphore, scope: Scope, receive: Receive, send: Send
    ) -> None:
        """Reads the body in one of the client's turns and one of the process's."""
        assert self._large_bodies is not None
        taken: list[asyncio.Semaphore] = []
        try:
            try:
                async with asyncio.timeout(LARGE_BODY_WAIT_SECONDS):
                    for turns in (own, self._large_bodies):
                        await turns.acquire()
                        taken.append(turns)
            except TimeoutError:
                # Waiting for one of the client's own turns, or one of the process's.
                held = (
                    f"{MAX_LARGE_BODIES_PER_CLIENT} requests of this client"
                    if not taken
                    else f"{MAX_LARGE_BODIES} requests"
                )
                busy = UpstreamUnavailable.for_now(
                    f"{held} of over {LARGE_BODY_BYTES} bytes are being read already, the "
                    f"most at once ({MAX_LARGE_BODIES_PER_CLIENT} of one client, "
                    f"{MAX_LARGE_BODIES} in all); send it again in a moment"
                )
                await self._refuse(busy, scope, receive, send)
                return
            await self._call_reading(scope, receive, send)
        finally:
            for turns in taken:
                turns.release()

    async def _call_reading(self, scope: Scope, receive: Receive, send: Send) -> None:
        limits = [self.max_body_bytes or None, _path_body_limit(scope["path"])]
        limit = min((bound for bound in limits if bound), default=None)
        if limit:
            await self._call_counting(scope, receive, send, limit)
        else:
            await self.app(scope, receive, send)

    async def _refuse(
        self, error: LodestarError, scope: Scope, receive: Receive, send: Send
    ) -> None:
        """Answers ``error``; a request with a body, which is then not read (or not
        whole), is answered on a connection that closes after it: kept open, the
        server would read and throw away all that the request declared (13 GB in
        8 s after a 413), or wait as long as a slow one trickles."""
        response = self.render(error, scope)
        if _has_body(scope):
            response.headers["connection"] = "close"
        await response(scope, receive, send)

    @staticmethod
    def _too_large(limit: int) -> PayloadTooLarge:
        return PayloadTooLarge(
            f"the request body is larger than {limit} bytes",
            [FieldError(field="body", reason=f"at most {limit} bytes")],
        )

    async def _call_counting(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        """Runs the app on a body counted as it streams: past ``limit`` bytes, 413."""
        received = 0
        refused: PayloadTooLarge | LengthRequired | RequestTimeout | None = None
        started = False
        declared = _declared_length(scope)
        undeclared = declared is None
        deadline = asyncio.get_running_loop().time() + BODY_GRACE_SECONDS
        deadline += (LARGE_BODY_BYTES if declared is None else declared) / BODY_BYTES_A_SECOND
        whole = False

        async def counting_receive() -> Message:
            nonlocal received, refused, whole
            if refused is not None:
                raise refused
            if whole:
                # The body is in: what is left to wait for is the client going away.
                return await receive()
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                refused = RequestTimeout(
                    f"the request body was not received in time ({received} bytes came)",
                    [FieldError(field="body", reason="sent too slowly")],
                )
                raise refused from None
            if message["type"] == "http.request":
                whole = not message.get("more_body", False)
                received += len(message.get("body", b""))
                if received > limit:
                    refused = self._too_large(limit)
                    raise refused
                if undeclared and received > LARGE_BODY_BYTES:
                    # Sent chunked, it would be read however many are being read.
                    refused = LengthRequired(
                        f"a request body over {LARGE_BODY_BYTES} bytes must declare its "
                        "Content-Length",
                        [FieldError(field="header.Content-Length", reason="required")],
                    )
                    raise refused
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if refused is not None and not started:
                # Whatever the app made of the refused body (FastAPI answers 400 to a
                # body it could not read), the caller gets the 413 sent below.
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except (PayloadTooLarge, LengthRequired, RequestTimeout) as exc:
            if exc is not refused:
                raise
            # A response already under way cannot become a 413; the server ends it.
        if refused is not None and not started:
            await self._refuse(refused, scope, receive, send)
