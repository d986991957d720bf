"""What every service's FastAPI app has in common: errors, tracing, health, auth wiring."""

from __future__ import annotations

import asyncio
import gc
import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Container
from contextlib import asynccontextmanager
from typing import Any

import orjson
from fastapi import APIRouter, FastAPI, Request
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from opentelemetry import context as otel_context
from opentelemetry import trace
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.access import GatewayGrantLookup
from shared.audit import AuditMiddleware, audit_router, route_template
from shared.auth import KeyCache, TokenVerifier, current_principal
from shared.compression import CompressedAnswers
from shared.db import Database, database_unavailable, rolled_back_for_concurrency, sqlstate
from shared.erased import ErasedTenants
from shared.erasure import ErasureListener
from shared.errors import (
    Contended,
    FieldError,
    InvalidInput,
    InvalidJson,
    LodestarError,
    UnsupportedMediaType,
    UpstreamUnavailable,
)
from shared.events import api_reason
from shared.http import make_client
from shared.input_guard import GRAPHQL_PATH, NESTED_TOO_DEEP, InputGuardMiddleware
from shared.kafka import broker_reachable
from shared.limits import LimitsMiddleware, RateLimiter
from shared.openapi import route_scopes, with_security
from shared.revocations import REVOKED_TOKENS_PATH, GatewayRevocations
from shared.settings import ServiceSettings
from shared.telemetry import context_from_http, current_tenant, current_trace_id

log = logging.getLogger("lodestar.http")

_HTTP_CODES = {
    400: "bad_request",
    401: "invalid_token",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    408: "request_timeout",
    413: "payload_too_large",
    415: "unsupported_media_type",
    431: "request_header_fields_too_large",
    422: "invalid_input",
    429: "rate_limited",
}


def error_response(error: LodestarError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status, headers=error.headers)


def error_response_at(error: LodestarError, scope: Scope) -> JSONResponse:
    """A refusal before any route ran (rate, size, unreadable input), shaped for where
    it was asked: GraphQL clients read ``errors`` and their codes, not REST's body."""
    if scope["path"] != GRAPHQL_PATH:
        return error_response(error)
    body = {"errors": [{"message": error.detail, "extensions": error.graphql_extensions()}]}
    return JSONResponse(body, status_code=error.status, headers=error.headers)


def json_field_of(loc: tuple[Any, ...]) -> tuple[int | None, str]:
    parts = list(loc)
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts.pop(0)
    index = None
    if len(parts) >= 2 and parts[0] == "events" and isinstance(parts[1], int):
        index = parts[1]
        parts = parts[2:]
    return index, ".".join(str(p) for p in parts) or "body"


PROBED_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
# Asked every few seconds by probes, and every second by each service (revoked
# tokens): a line each would bury what a log is read for.
UNLOGGED_PATHS = frozenset({"/healthz", "/readyz", REVOKED_TOKENS_PATH})


def allowed_methods(request: Request) -> list[str]:
    """Every method some route of the app takes at the request's path. Starlette's own
    405 names only the first route it found there, while FastAPI makes a route of each
    method (GET and PUT /v1/settings/kpi are two)."""
    routes = request.app.router.routes
    allowed = []
    for method in PROBED_METHODS:
        probe = {**request.scope, "method": method}
        if any(route.matches(probe)[0] is Match.FULL for route in routes):
            allowed.append(method)
    if "GET" in allowed and "HEAD" not in allowed:
        allowed.insert(allowed.index("GET") + 1, "HEAD")  # see HeadAsGet
    return allowed


# What FastAPI says of a body it did not read as JSON (another Content-Type).
_NOT_AN_OBJECT = {"model_attributes_type", "dict_type"}


def media_type(request: Request) -> str:
    """The request's Content-Type without its parameters, lower case ("" when none)."""
    return request.headers.get("content-type", "").partition(";")[0].strip().lower()


def is_json(media: str) -> bool:
    """A JSON media type: application/json, or any structured one (RFC 6839: +json)."""
    return media == "application/json" or media.endswith("+json")


def unsupported_media_type(media: str, wanted: str = "application/json") -> UnsupportedMediaType:
    """415 naming the Content-Type a body was sent as, and the one the route reads."""
    return UnsupportedMediaType(
        f"the body must be sent as {wanted}, not {media or 'without a type'}",
        [FieldError(field="header.Content-Type", reason=f"must be {wanted}")],
    )


def require_json_body(request: Request) -> None:
    """For a JSON body a route reads itself: refused (415) under another Content-Type,
    as FastAPI's models are; taken with none, as FastAPI takes it."""
    media = media_type(request)
    if media and not is_json(media):
        raise unsupported_media_type(media)


def _unreadable_body(request: Request, exc: RequestValidationError) -> LodestarError | None:
    """The error for a body that is no JSON, or not sent as JSON; None for one that is."""
    if any(err.get("type") == "json_invalid" for err in exc.errors()):
        # FastAPI names the character offset where parsing failed as the field.
        return InvalidJson()
    media = media_type(request)
    if is_json(media):
        return None
    if any(
        tuple(err.get("loc", ())) == ("body",) and err.get("type") in _NOT_AN_OBJECT
        for err in exc.errors()
    ):
        return unsupported_media_type(media)
    return None


async def _authorize(request: Request) -> None:
    """Raises what the matched route's access checks would (401, 403): the token, its
    scopes, and the tenant it names (grants and erasures included)."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute) or route_scopes(route.dependant) is None:
        return
    await current_principal(request)
    for check in _access_checks(route.dependant):
        # They take the request and the tenant_id it names, in its path or its query.
        named = {"request": request, "tenant_id": request.query_params.get("tenant_id")}
        named.update(request.path_params)
        parameters = inspect.signature(check).parameters
        await check(**{name: value for name, value in named.items() if name in parameters})


def _access_checks(dependant: Dependant) -> list[Callable[..., Awaitable[Any]]]:
    """The dependencies that check a scope (see shared.access, shared.auth), or say
    they check access otherwise (``checks_access``)."""
    found: list[Callable[..., Awaitable[Any]]] = []
    for dependency in dependant.dependencies:
        call = dependency.call
        if call is not None and (
            hasattr(call, "required_scope") or getattr(call, "checks_access", False)
        ):
            found.append(call)
        found += _access_checks(dependency)
    return found


# FastAPI's words for a body its JSON parser raised on other than as no JSON.
_BODY_NOT_PARSED = "There was an error parsing the body"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(LodestarError)
    async def lodestar_error(request: Request, exc: LodestarError) -> Response:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        unreadable = _unreadable_body(request, exc)
        if unreadable is not None:
            # FastAPI reads the body before it checks the token: who may call is
            # answered first, as for a body that parses.
            try:
                await _authorize(request)
            except LodestarError as refused:
                return error_response(refused)
            return error_response(unreadable)
        errors = []
        for err in exc.errors():
            loc = tuple(err.get("loc", ()))
            if err.get("type") == "payload_conflict":
                # A rule between fields, raised on the whole body: it names the one at fault.
                loc = (*loc, (err.get("ctx") or {}).get("at", ""))
            index, field = json_field_of(loc)
            errors.append(FieldError(field=field, reason=api_reason(err), index=index))
        detail = "; ".join(f"{e.field}: {e.reason}" for e in errors[:5])
        return error_response(InvalidInput(f"invalid request: {detail}", errors))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        media = media_type(request)
        if exc.detail == _BODY_NOT_PARSED and (is_json(media) or not media):
            # A body FastAPI's parser raised on other than as no JSON (nested about a
            # thousand deep, or not UTF-8): 422 naming the body, after who may call.
            try:
                await _authorize(request)
            except LodestarError as refused:
                return error_response(refused)
            if not isinstance(exc.__cause__, RecursionError):
                return error_response(InvalidJson())
            too_deep = [FieldError(field="body", reason=NESTED_TOO_DEEP)]
            return error_response(InvalidInput(f"the body {NESTED_TOO_DEEP}", too_deep))
        code = _HTTP_CODES.get(exc.status_code, "error")
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = ", ".join(allowed_methods(request)) or headers.get("Allow", "")
        return JSONResponse(
            {"error": code, "detail": str(exc.detail)},
            status_code=exc.status_code,
            headers=headers,
        )

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        # Only what escaped UnexpectedErrors (a fault of a middleware outside it).
        return unexpected_response(exc)


# SQLSTATEs of a database that answered but cannot take a write until an operator acts.
OUT_OF_ROOM = {"53100": "out of disk space", "53200": "out of memory"}
# When a write last met each: readiness says so for a while, as the database still
# answers the readiness check's read.
_out_of_room_at: dict[str, float] = {}
OUT_OF_ROOM_NOT_READY_SECONDS = 30.0


def transient_failure(exc: BaseException) -> LodestarError | None:
    """What to answer for a failure that the same request may pass when sent again in a
    moment (a 503 with ``Retry-After``), or None for a fault of ours."""
    if rolled_back_for_concurrency(exc):
        log.warning("a transaction gave way to a concurrent one: %s", exc)
        return Contended()
    if out_of := OUT_OF_ROOM.get(sqlstate(exc) or ""):
        # It answered: it cannot keep anything until an operator gives it room.
        log.error("the database is out of room: %r", exc)
        _out_of_room_at[out_of] = time.monotonic()
        return UpstreamUnavailable(
            f"the database is {out_of}; nothing of the request was kept: send it again "
            "once an operator has made room",
            headers={"Retry-After": "60"},
        )
    if database_unavailable(exc):
        log.warning("the database did not answer: %r", exc)
        return UpstreamUnavailable.for_now(
            "the database is not answering just now; send the request again in a moment"
        )
    return None


def unexpected_response(exc: BaseException) -> Response:
    """The answer to an exception no handler took: 503 to retry when it was the
    database's for now (see ``transient_failure``), else a 500 naming the trace. Logged
    with the trace id; the caller gets no stack trace and no SQL."""
    if (transient := transient_failure(exc)) is not None:
        return error_response(transient)
    log.error("unhandled error", exc_info=exc)
    span = trace.get_current_span()
    span.record_exception(exc)
    span.set_status(trace.Status(trace.StatusCode.ERROR))
    body = {"error": "internal", "detail": "internal error", "trace_id": current_trace_id()}
    return JSONResponse(body, status_code=500)


class UnexpectedErrors:
    """Answers an exception no handler took, inside the request's span (so the answer
    names its trace) and without passing it on: uvicorn closes the connection of an
    answer whose exception reaches it, and the gateway's next request on that pooled
    connection then failed with a 503."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking)
        except Exception as exc:
            if started:
                raise
            await unexpected_response(exc)(scope, receive, send)


def match_holds(if_match: str, etag: str) -> bool:
    """Whether an ``If-Match`` header names ``etag`` (RFC 9110 §13.1.1: a list of tags
    compared strongly, "*" for any): what the client read is still what is stored."""
    held = {tag.strip() for tag in if_match.split(",") if tag.strip()}
    return etag in held or "*" in held


def none_match_holds(if_none_match: str, etag: str) -> bool:
    """Whether an ``If-None-Match`` header names ``etag`` (RFC 9110 §13.1.2: a list of
    tags, weak ones compared weakly, "*" for any): the client has it, 304."""
    held = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",") if tag.strip()}
    return etag.removeprefix("W/") in held or "*" in held


class HeadAsGet:
    """HEAD wherever GET is taken (RFC 9110 §9.3.2): the GET's status and headers,
    Content-Length and ETag included, without its body. FastAPI routes take only the
    methods they name, so a poller checking an ETag by HEAD got 405."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def without_body(message: Message) -> None:
            if message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        await self.app({**scope, "method": "GET"}, receive, without_body)


# Set on every answer that has none of its own (a proxied service's answer has them):
# no browser reads a JSON or CSV answer as a page or a script, and no page of ours
# (GraphiQL's included) is framed by another site.
SECURITY_HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy", b"frame-ancestors 'none'"),
)


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers += [header for header in SECURITY_HEADERS if header[0] not in present]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)


class TracingMiddleware:
    """A server span per request, continuing the caller's trace, and one log line (none
    for probes and the revocation poll)."""

    def __init__(self, app: ASGIApp, service: str) -> None:
        self.app = app
        self.tracer = trace.get_tracer(f"lodestar.{service}")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Probes and the services' once-a-second poll of revoked tokens would bury the
        # traces worth reading (three spans a second from an idle stack).
        if scope["type"] != "http" or scope["path"] in UNLOGGED_PATHS:
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        parent = context_from_http(headers)
        method, path = scope["method"], scope["path"]
        status = {"code": 500}

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        started = time.perf_counter()
        token = otel_context.attach(parent)
        tenant_token = current_tenant.set(None)
        try:
            with self.tracer.start_as_current_span(
                f"{method} {path}", kind=trace.SpanKind.SERVER
            ) as span:
                span.set_attribute("http.request.method", method)
                span.set_attribute("url.path", path)
                await self.app(scope, receive, send_wrapper)
                span.set_attribute("http.response.status_code", status["code"])
                if scope.get("route") is not None:
                    # Named as OpenTelemetry's HTTP conventions have it, by the route
                    # (`/v1/users/{user_id}`): a name per id makes an operation of each.
                    route = route_template(scope)
                    span.set_attribute("http.route", route)
                    span.update_name(f"{method} {route}")
                log.info(
                    "request",
                    extra={
                        "fields": {
                            "method": method,
                            "path": path,
                            "status": status["code"],
                            "ms": round((time.perf_counter() - started) * 1000, 2),
                        }
                    },
                )
        finally:
            current_tenant.reset(tenant_token)
            otel_context.detach(token)


# How long /readyz waits for each of the database and the broker.
READY_CHECK_SECONDS = 2.0


def _index_router(service: str) -> APIRouter:
    """``/``: where to go from the address ``make run`` prints, rather than a 404."""
    router = APIRouter(include_in_schema=False)
    links = {
        "service": f"Lodestar {service}",
        "health": "/healthz",
        "ready": "/readyz",
        "openapi": "/openapi.json",
    }
    if service == "gateway":
        links |= {"graphql": "/graphql", "oauth": "/.well-known/oauth-authorization-server"}

    @router.get("/")
    async def index() -> dict[str, str]:
        return links

    return router


def health_router(settings: ServiceSettings) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz")
    async def readyz(request: Request) -> Response:
        checks: dict[str, str] = {}
        try:
            db: Database = request.app.state.db
            # A frozen server accepts connections and answers nothing: readiness must
            # say so, not wait with it.
            async with asyncio.timeout(READY_CHECK_SECONDS):
                await db.ping()
            checks["database"] = "ok"
        except TimeoutError:
            checks["database"] = f"unresponsive: no answer within {READY_CHECK_SECONDS:g} s"
        except Exception as exc:
            checks["database"] = f"unreachable: {type(exc).__name__}"
        for what, at in _out_of_room_at.items():
            if (ago := time.monotonic() - at) < OUT_OF_ROOM_NOT_READY_SECONDS:
                checks["database"] = f"refusing writes: {what} ({ago:.0f} s ago)"
        reachable = await broker_reachable(settings.kafka_bootstrap_servers, READY_CHECK_SECONDS)
        checks["broker"] = "ok" if reachable else "unreachable"
        revocations: GatewayRevocations | None = getattr(request.app.state, "revocations", None)
        checked_with = getattr(getattr(request.app.state, "token_verifier", None), "revoked", None)
        if revocations is not None and checked_with is revocations:
            # Its tokens are refused until the revocations are read (see shared.auth).
            checks["revocations"] = checked_with.unknown or "ok"
        # A service's own conditions beyond these two (metrics: its consumer has joined
        # the event stream, or its answers lack whatever came since it started).
        for name, check in getattr(request.app.state, "readiness_checks", {}).items():
            checks[name] = check()
        ready = all(v == "ok" for v in checks.values())
        return Response(
            orjson.dumps({"status": "ready" if ready else "not_ready", "checks": checks}),
            status_code=200 if ready else 503,
            media_type="application/json",
        )

    return router


def token_verifier(settings: ServiceSettings, revoked: Container[str] = ()) -> TokenVerifier:
    return TokenVerifier(
        KeyCache(settings.effective_jwks_url),
        issuer=settings.effective_issuer,
        audience=settings.audience,
        external=external_verifier(settings),
        revoked=revoked,
    )


@asynccontextmanager
async def service_running(
    app: FastAPI, settings: ServiceSettings, service: str
) -> AsyncIterator[Database]:
    """What every service but the gateway runs with: its database; what it asks the
    gateway (keys and revoked tokens to verify tokens by, an agency's grant on each of
    its requests); and its side of erasure, whose tenants its requests refuse."""
    client = make_client(5.0)
    app.state.revocations = GatewayRevocations(settings.gateway_url, client)
    app.state.token_verifier = token_verifier(settings, revoked=app.state.revocations)
    app.state.revocations.on_signing_keys = app.state.token_verifier.keys.published
    app.state.grant_lookup = GatewayGrantLookup(settings.gateway_url, client)
    app.state.db = Database(settings.database_url, service)
    erased = ErasedTenants(listed_by_gateway=app.state.revocations.erased)
    erasure = ErasureListener(service, app.state.db, settings, erased=erased)
    app.state.erased = erased
    await app.state.revocations.start()
    erasure.start()
    try:
        yield app.state.db
    finally:
        await erasure.stop()
        await app.state.revocations.stop()
        await client.aclose()
        await app.state.db.dispose()


def external_verifier(settings: ServiceSettings) -> TokenVerifier | None:
    """The external OpenID provider's token check, when one is configured."""
    if not settings.oidc_issuer:
        return None
    issuer = settings.oidc_issuer.rstrip("/")
    return TokenVerifier(
        KeyCache(settings.oidc_jwks_url or f"{issuer}/.well-known/jwks.json"),
        issuer=settings.oidc_issuer,
        audience=settings.audience,
        tenant_claim=settings.oidc_tenant_claim,
        accept_jwt_typ=True,
    )


# A request allocates thousands of short-lived dicts and models (a batch of events, a
# KPI answer's rows); at Python's default of a collection every 700 allocations the
# collector kept scanning them mid-request. Cycles are rare here, so collect seldom.
GC_YOUNGEST_THRESHOLD = 50_000


def _tune_garbage_collector() -> None:
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNGEST_THRESHOLD, middle, oldest)
    # What is loaded at start-up lives as long as the process: never scan it again.
    gc.freeze()


def build_app(
    service: str,
    settings: ServiceSettings,
    audit_skip: Callable[[Scope, int], bool] | None = None,
    compressed_paths: tuple[str, ...] = (),
    serves_its_audit: bool = True,
    forwarded: Callable[[Scope], bool] | None = None,
    **kwargs: Any,
) -> FastAPI:
    """A FastAPI app with the shared error rendering, tracing, request limits (body size
    and per-client rate, from ``settings``; ``app.state.rate_limiter`` holds the buckets)
    health routes, and the audit trail of writes (``audit_skip`` tells, by request and the
    answer's status, which writes this service does not record; ``forwarded`` which
    requests it hands on unread to the service that reads them, and checks)."""
    # TracingMiddleware makes the one server span a request gets; FastAPI's own
    # telemetry would make a second one, and record metrics nobody reads, per request.
    _tune_garbage_collector()
    app = FastAPI(
        title=f"Lodestar {service}",
        telemetry={"tracing": False, "metrics": False, "logs": False},
        # A path with a slash too many is 404, not a redirect: a service's redirect
        # names its own port, which the gateway would hand to the public.
        redirect_slashes=False,
        # A body sent with no Content-Type is read as JSON on every route, as the
        # event routes read theirs. (FastAPI refuses it by default against CSRF from
        # browsers; every route here needs a bearer token, which no browser adds.)
        strict_content_type=False,
        **kwargs,
    )
    app.state.settings = settings
    install_error_handlers(app)
    # Innermost: an exception of a route becomes its answer before anything sees it.
    app.add_middleware(UnexpectedErrors)
    app.add_middleware(
        InputGuardMiddleware,
        field_of=json_field_of,
        render=error_response_at,
        forwarded=forwarded,
    )
    # The handlers have left who and for which tenant in the request state. Outside the
    # guard: a write it refuses is recorded too.
    app.add_middleware(AuditMiddleware, service=service, skip=audit_skip)
    limiter = RateLimiter(settings.rate_limit_per_second, settings.rate_limit_burst)
    app.state.rate_limiter = limiter
    # Added first, so it runs inside tracing: refused requests are traced and logged too.
    app.add_middleware(
        LimitsMiddleware,
        limiter=limiter,
        max_body_bytes=settings.max_body_bytes,
        render=error_response_at,
    )
    app.add_middleware(TracingMiddleware, service=service)
    if compressed_paths:
        # Inside HeadAsGet: a HEAD tells the very headers its GET gets.
        app.add_middleware(CompressedAnswers, paths=compressed_paths)
    app.add_middleware(HeadAsGet)
    app.add_middleware(SecurityHeaders)
    app.include_router(health_router(settings))
    app.include_router(_index_router(service))
    if serves_its_audit:
        # For the gateway to merge; the gateway itself, public, reads its own directly.
        app.include_router(audit_router())
    with_security(app)
    return app
