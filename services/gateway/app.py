"""The gateway: OAuth 2 authorization server, tenants, GraphQL, and `/v1/*` routing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from functools import partial
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.responses import JSONResponse, Response
from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware

from services.gateway.audit.endpoints import router as audit_router
from services.gateway.config import SIGNING_KEYS_KEY_VARIABLE, Settings, get_settings
from services.gateway.erasures.tracker import ErasureTracker, refuse_erased_writes
from services.gateway.exports.endpoints import router as exports_router
from services.gateway.exports.service import ExportRunner
from services.gateway.grants.endpoints import internal_router as grants_internal_router
from services.gateway.grants.endpoints import router as grants_router
from services.gateway.grants.service import DatabaseGrantLookup
from services.gateway.graphql.schema import mount_graphql
from services.gateway.oauth.authorize import router as authorize_router
from services.gateway.oauth.endpoints import router as oauth_router
from services.gateway.oauth.revoked import RevokedTokens
from services.gateway.oauth.server import TokenServer
from services.gateway.oauth.service import ensure_platform_admin
from services.gateway.oauth.signing import KeyReloader, load_signer
from services.gateway.oauth.signing_keys import router as signing_keys_router
from services.gateway.oauth.user_grants import USER_TOKEN_TTL_SECONDS
from services.gateway.proxy.endpoints import router as proxy_router
from services.gateway.proxy.routes import owner_of_request
from services.gateway.proxy.service import OpenApiMerger, service_urls
from services.gateway.tenants.endpoints import is_tenant_path
from services.gateway.tenants.endpoints import router as tenants_router
from services.gateway.tenants.internal import router as tenant_internal_router
from services.gateway.users.endpoints import router as users_router
from shared.auth import KeyCache, TokenVerifier
from shared.db import Database
from shared.errors import BadRequest, FieldError
from shared.http import make_client
from shared.sealing import Sealer
from shared.service import build_app, external_verifier
from shared.telemetry import setup_telemetry

SERVICE = "gateway"
# The large answers an ERP or a dashboard pulls, gzip-compressed when the client takes
# it (a year of KPIs by day is megabytes). No other route: OAuth and account answers
# carry secrets (BREACH); these hold none the caller may not read, and bearer tokens
# are not sent by a browser on another site's behalf.
COMPRESSED_PATHS = ("/graphql", "/v1/kpis", "/openapi.json")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    setup_telemetry(SERVICE, settings.otlp_endpoint, settings.log_level)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db = Database(
            settings.database_url,
            SERVICE,
            statement_timeout_seconds=settings.statement_timeout_seconds,
        )
        app.state.db = db
        app.state.grant_lookup = DatabaseGrantLookup(db)
        async with db.session() as session:
            app.state.signer = await load_signer(
                session, Sealer(settings.signing_keys_key, SIGNING_KEYS_KEY_VARIABLE)
            )
            if settings.admin_client_id and settings.admin_client_secret:
                await ensure_platform_admin(
                    session,
                    settings.admin_client_id,
                    settings.admin_client_secret,
                    settings.token_ttl_seconds,
                )

        async def own_keys(_: str) -> dict[str, Any]:
            jwks: dict[str, Any] = app.state.signer.jwks()
            return jwks

        app.state.revoked_tokens = RevokedTokens(db)
        await app.state.revoked_tokens.load()
        app.state.revoked_tokens.start()
        # The gateway checks its own tokens from memory: no HTTP call to itself.
        app.state.token_verifier = TokenVerifier(
            KeyCache(settings.effective_jwks_url, fetch=own_keys),
            issuer=settings.effective_issuer,
            audience=settings.audience,
            external=external_verifier(settings),
            revoked=app.state.revoked_tokens,
        )
        app.state.key_reloader = KeyReloader(
            db,
            app.state.signer,
            timedelta(seconds=max(settings.token_ttl_seconds, USER_TOKEN_TTL_SECONDS)),
            after=partial(app.state.token_verifier.keys.refresh, min_age=0.0),
        )
        app.state.key_reloader.start()
        app.state.token_server = TokenServer(
            app.state.signer,
            settings.effective_issuer,
            settings.audience,
            settings.token_ttl_seconds,
        )
        app.state.http = make_client(settings.proxy_timeout_seconds)
        app.state.openapi_merger = OpenApiMerger(app.state.http, service_urls(settings))
        app.state.exports = ExportRunner(db, settings, app.state.signer, app.state.http)
        await app.state.exports.fail_abandoned()
        app.state.erasures = ErasureTracker(db, settings)
        await app.state.erasures.load_erased()
        # Read by the audit log, which writes no line of an erased tenant.
        app.state.erased = app.state.erasures
        app.state.erasures.start()
        try:
            yield
        finally:
            await app.state.erasures.stop()
            await app.state.revoked_tokens.stop()
            await app.state.key_reloader.stop()
            await app.state.exports.stop()
            await app.state.http.aclose()
            await db.dispose()

    app = build_app(
        SERVICE,
        settings,
        # An erasure done is not audited: its erasures row is the record, and an audit
        # line would keep the erased tenant's id. A refused one is, as any refused write.
        audit_skip=lambda scope, status: (
            owner_of_request(scope) is not None or (is_tenant_path(scope["path"]) and status < 400)
        ),
        lifespan=lifespan,
        compressed_paths=COMPRESSED_PATHS,
        # Public: its trail and its tables leave by GET /v1/audit and by exports, which
        # read them directly; no /internal route of its own hands them out unrecorded.
        serves_its_audit=False,
        forwarded=lambda scope: owner_of_request(scope) is not None,
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    mount_graphql(app)
    app.include_router(oauth_router)
    app.include_router(authorize_router)
    app.include_router(tenants_router)
    app.include_router(signing_keys_router)
    # An erased tenant's tokens verify until they expire: none of them writes again.
    no_erased = [Depends(refuse_erased_writes)]
    app.include_router(grants_router, dependencies=no_erased)
    app.include_router(users_router, dependencies=no_erased)
    app.include_router(audit_router)
    app.include_router(exports_router, dependencies=no_erased)
    app.include_router(grants_internal_router)
    app.include_router(tenant_internal_router)
    # Last: everything under /v1 the gateway does not serve itself goes downstream.
    app.include_router(proxy_router)
    if settings.allowed_origins:
        # Outermost: a preflight is answered before limits, tokens or the audit see it.
        app.add_middleware(
            ContractCors,
            allow_origins=settings.allowed_origins,
            allow_methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=BROWSER_REQUEST_HEADERS,
            expose_headers=BROWSER_READABLE_HEADERS,
            # Bearer tokens, not cookies: no credentials mode.
            allow_credentials=False,
            max_age=600,
        )
    return app


# Each part of a preflight Starlette may refuse, by the name its refusal gives it.
_PREFLIGHT_FIELDS = {
    "origin": ("header.Origin", "is not an allowed origin (LODESTAR_GATEWAY_CORS_ORIGINS)"),
    "method": ("header.Access-Control-Request-Method", "is not a method the gateway takes"),
    "headers": (
        "header.Access-Control-Request-Headers",
        "names a header the gateway does not take from browsers",
    ),
    "private-network": (
        "header.Access-Control-Request-Private-Network",
        "private network access is not allowed",
    ),
}


class ContractCors(CORSMiddleware):
    """Starlette's CORS, its refused preflight answered in the contract's error body
    naming each refused header, as every other refusal is, not as plain text."""

    def preflight_response(self, request_headers: Headers) -> Response:
        answer = super().preflight_response(request_headers)
        if answer.status_code < 400:
            return answer
        refused = bytes(answer.body).decode().removeprefix("Disallowed CORS ").split(", ")
        named = [_PREFLIGHT_FIELDS[part] for part in refused if part in _PREFLIGHT_FIELDS]
        error = BadRequest(
            "the preflight is refused", [FieldError(field, reason) for field, reason in named]
        )
        # The CORS headers it made; the body's length and type are the new body's.
        kept = {
            k: v
            for k, v in answer.headers.items()
            if k.lower() not in ("content-length", "content-type")
        }
        return JSONResponse(error.body(), status_code=error.status, headers=kept)


# What a browser app sends beyond the always-allowed headers, and the answer headers it
# reads: conditional KPI polling, idempotent pushes, traces, back-off.
BROWSER_REQUEST_HEADERS = [
    "Authorization",
    "Content-Type",
    "Idempotency-Key",
    "If-None-Match",
    # Settings changed only if still as read.
    "If-Match",
    "traceparent",
    "tracestate",
    # Apollo Client names itself in these when given a name and version: a preflight
    # refusing them fails every query of such a dashboard.
    "apollographql-client-name",
    "apollographql-client-version",
]
BROWSER_READABLE_HEADERS = [
    "ETag",
    "Location",
    "Retry-After",
    "WWW-Authenticate",
    "Content-Disposition",
    # A KPI CSV's warnings (a missing FX rate behind a null) travel only in it.
    "Lodestar-Warnings",
    "Idempotent-Replayed",
]
