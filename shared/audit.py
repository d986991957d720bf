"""The audit trail: every write, sign-in and token issue, recorded by the service
that handled it, in its own schema; the gateway's ``GET /v1/audit`` reads them all.

Recorded after the response has gone out, so the caller never waits for it; a
failure to record is logged, never turned into a failed request.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
from annotated_types import Ge, Le
from fastapi import APIRouter, Query, Request
from pydantic import AfterValidator, AwareDatetime, WrapValidator
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.access import Access, WholeTenantAdmin
from shared.auth import Principal, current_principal
from shared.db import Database, hold_tenants
from shared.events import OFFSET_REASON, timestamp_text, within_offsets
from shared.input_guard import REFUSED_BY_GUARD
from shared.paths import sent_segments
from shared.query_lists import DIGITS_ONLY
from shared.telemetry import current_tenant, current_trace_id

log = logging.getLogger("lodestar.audit")

# Every service's trail of writes, one table in its own schema.
AUDIT_TABLE = "audit_log"
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
AUDITED_PREFIXES = ("/v1/", "/oauth/")
AUDIT_PATH = "/internal/audit"
MAX_AUDIT_ROWS = 1000
AuditLimit = Annotated[int, Ge(1), Le(MAX_AUDIT_ROWS), DIGITS_ONLY, Query()]
COLUMNS = (
    "at",
    "tenant_id",
    "actor",
    "client_id",
    "service",
    "action",
    "target",
    "status",
    "ip",
    "user_agent",
    "trace_id",
    "detail",
)


def _client_ip(scope: Scope, headers: dict[str, str], service: str) -> str | None:
    """The caller's address as the gateway saw it: its own peer at the gateway, and at
    a service the address the gateway's proxy appended last. The entries before it are
    the caller's own say, which anyone may write."""
    forwarded = headers.get("x-forwarded-for")
    if forwarded and service != "gateway":
        return forwarded.split(",")[-1].strip()
    client = scope.get("client")
    return str(client[0]) if client else None


def route_template(scope: Scope) -> str:
    route = scope.get("route")
    # As the API document writes it: `{store_id}`, not the router's `{store_id:anything}`.
    return _CONVERTER.sub(r"{\1}", str(getattr(route, "path", None) or scope["path"]))


_CONVERTER = re.compile(r"\{(\w+):\w+\}")


def audit_as(
    request: Request, *, actor: str | None, client_id: str | None, tenant_id: str | None
) -> None:
    """Names who acted, for a route that finds its caller itself (a sign-in, a token
    request): in its tenant's audit trail, and in every log line of the request after."""
    request.state.audit_actor = {"actor": actor, "client_id": client_id, "tenant_id": tenant_id}
    current_tenant.set(tenant_id)


def _storable(text: str) -> str:
    """``text`` as PostgreSQL's text keeps it: a NUL or a lone surrogate, which a
    refused request may hold, written as escapes."""
    return text.replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode("utf-8")


def _target(scope: Scope) -> str:
    """The path asked, each segment decoded but for a ``/`` or ``%`` it holds: a store
    "s/1" is ``/v1/settings/stores/s%2F1``, not a path of one more segment."""
    return "/".join(
        segment.replace("%", "%25").replace("/", "%2F") for segment in sent_segments(scope)
    )


def audit_record(scope: Scope, service: str, status: int) -> dict[str, Any]:
    """What the audit keeps of a finished request, from what the handlers left behind."""
    state: dict[str, Any] = scope.get("state") or {}
    headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
    principal: Principal | None = state.get("principal")
    access: Access | None = state.get("access")
    actor: dict[str, Any] = state.get("audit_actor") or {}
    # A route that acts on a tenant it names (the platform admin's, which has none of
    # its own) says whose trail the entry belongs to.
    tenant = state.get("audit_tenant") or (
        access.tenant_id
        if access is not None
        else actor.get("tenant_id") or (principal.tenant_id if principal else None)
    )
    detail: dict[str, Any] = dict(state.get("audit_detail") or {})
    if access is not None and access.grant_id:
        detail["grant_id"] = access.grant_id
        detail["acting_tenant"] = principal.tenant_id if principal else None
    return {
        "tenant_id": tenant,
        "actor": actor.get("actor") or (principal.subject if principal else None),
        "client_id": actor.get("client_id") or (principal.client_id if principal else None),
        "service": service,
        "action": _storable(f"{scope['method']} {route_template(scope)}"),
        "target": _storable(_target(scope)),
        "status": status,
        "ip": _client_ip(scope, headers, service),
        "user_agent": _storable(headers.get("user-agent", "")[:500]) or None,
        "trace_id": current_trace_id(),
        "detail": detail or None,
    }


class AuditMiddleware:
    """Records each write under ``/v1/`` and ``/oauth/`` once its answer is sent."""

    def __init__(
        self, app: ASGIApp, service: str, skip: Callable[[Scope, int], bool] | None = None
    ) -> None:
        self.app = app
        self.service = service
        # By request and answer's status: the gateway skips what it only forwards (the
        # owning service records that) and the erasures that were done.
        self.skip = skip or (lambda _scope, _status: False)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        audited = (
            scope["type"] == "http"
            and scope["method"] in WRITE_METHODS
            and scope["path"].startswith(AUDITED_PREFIXES)
        )
        if not audited:
            await self.app(scope, receive, send)
            return
        status = {"code": 500}

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            await self._record(scope, status["code"])

    async def _record(self, scope: Scope, status: int) -> None:
        answered_here = (scope.get("state") or {}).get(REFUSED_BY_GUARD, False)
        if self.skip(scope, status) and not answered_here:
            return
        state = getattr(scope.get("app"), "state", None)
        db: Database | None = getattr(state, "db", None)
        if db is None:
            return
        if answered_here:
            # Refused before any route read the token: the caller is found here, so
            # that a probe with crafted bodies is in its tenant's trail too.
            with contextlib.suppress(Exception):
                await current_principal(Request(scope))
        record = audit_record(scope, self.service, status)
        erased = getattr(state, "erased", ())
        detail = record["detail"] or {}
        acting = detail.get("acting_tenant")
        try:
            async with db.raw_connection() as conn, conn.transaction():
                # An erasure of the tenant (or of the agency acting in its data) under
                # way waits for this row and deletes (or unnames) it; one that began
                # first is waited for, and then seen below.
                held = [t for t in (record["tenant_id"], acting) if isinstance(t, str)]
                if held:
                    await hold_tenants(conn, db.schema, held)
                if record["tenant_id"] in erased:
                    # A row would bring the erased tenant back; the log keeps the attempt.
                    log.info("write refused for an erased tenant", extra={"fields": record})
                    return
                if acting in erased:
                    # As the agency's erasure leaves what it did in a seller's trail.
                    record = {**record, "actor": None, "client_id": None}
                    record["detail"] = {**detail, "acting_tenant": None}
                await conn.execute(
                    f"INSERT INTO {AUDIT_TABLE} (tenant_id, actor, client_id, service, action, "
                    "target, status, ip, user_agent, trace_id, detail) "
                    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11::jsonb)",
                    record["tenant_id"],
                    record["actor"],
                    record["client_id"],
                    record["service"],
                    record["action"],
                    record["target"],
                    record["status"],
                    record["ip"],
                    record["user_agent"],
                    record["trace_id"],
                    None if record["detail"] is None else orjson.dumps(record["detail"]).decode(),
                )
        except Exception:
            # The request is done; losing its audit line is logged loudly, not raised.
            log.exception("could not record an audit entry", extra={"fields": record})


def _in_utc(value: datetime) -> datetime:
    if not within_offsets(value):
        raise ValueError(OFFSET_REASON)
    # PostgreSQL keeps instants in UTC: year 1 at +14:00 is no instant it can compare.
    try:
        value.astimezone(UTC)
    except OverflowError:
        raise ValueError("must be an instant between years 1 and 9999 in UTC") from None
    return value


# ``since`` and ``until`` of an audit question: written as events' timestamps are (digits
# would be read as seconds since 1970, and one without an offset in no known zone).
AuditInstant = Annotated[AwareDatetime, WrapValidator(timestamp_text), AfterValidator(_in_utc)]


async def audit_rows(
    db: Database, tenant_id: str, since: datetime | None, until: datetime | None, limit: int
) -> list[dict[str, Any]]:
    """A tenant's audit entries of this service, newest first: its own, and what its
    people did in other tenants' data under a grant (kept in those tenants' trails too).

    Each half reads its own index newest first, so a long trail costs only ``limit``
    rows of each."""
    columns = ", ".join(("id", *COLUMNS))
    window = "AND ($2::timestamptz IS NULL OR at >= $2) AND ($3::timestamptz IS NULL OR at < $3)"
    async with db.raw_connection() as conn:
        rows = await conn.fetch(
            f"SELECT {', '.join(COLUMNS)} FROM ("
            f"(SELECT {columns} FROM {AUDIT_TABLE} WHERE tenant_id = $1 {window} "
            "ORDER BY at DESC, id DESC LIMIT $4) UNION ALL "
            f"(SELECT {columns} FROM {AUDIT_TABLE} WHERE detail->>'acting_tenant' = $1 "
            f"AND tenant_id IS DISTINCT FROM $1 {window} ORDER BY at DESC, id DESC LIMIT $4)"
            ") AS entries ORDER BY at DESC, id DESC LIMIT $4",
            tenant_id,
            since,
            until,
            limit,
        )
    return [
        {
            **dict(row),
            "at": row["at"].isoformat(),
            # Decoded already when the pool's JSON codec is installed; a string otherwise.
            "detail": orjson.loads(row["detail"])
            if isinstance(row["detail"], str)
            else row["detail"],
        }
        for row in rows
    ]


def audit_router() -> APIRouter:
    """``GET /internal/audit``: this service's entries of the caller's tenant, for the
    gateway to merge (scope ``tenant:admin``)."""
    router = APIRouter(include_in_schema=False)

    @router.get(AUDIT_PATH)
    async def internal_audit(
        request: Request,
        access: WholeTenantAdmin,
        since: AuditInstant | None = None,
        until: AuditInstant | None = None,
        limit: AuditLimit = 100,
    ) -> dict[str, Any]:
        rows = await audit_rows(request.app.state.db, access.tenant_id, since, until, limit)
        return {"entries": rows}

    return router
