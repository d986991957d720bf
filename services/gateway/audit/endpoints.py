"""``GET /v1/audit``: the tenant's audit trail from every service, newest first."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated, Any

import httpx
from fastapi import APIRouter, Query, Request
from pydantic import BaseModel

from services.gateway.proxy.routes import DOWNSTREAM
from services.gateway.proxy.service import service_urls
from shared.access import WholeTenantAdmin
from shared.audit import AUDIT_PATH, AuditInstant, AuditLimit, audit_rows
from shared.auth import bearer_token

router = APIRouter(tags=["audit"])


class AuditEntry(BaseModel):
    at: datetime
    tenant_id: str | None
    actor: str | None
    client_id: str | None
    service: str
    action: str
    target: str | None
    status: int | None
    ip: str | None
    user_agent: str | None
    trace_id: str | None
    detail: dict[str, Any] | None


class AuditList(BaseModel):
    entries: list[AuditEntry]
    warnings: list[str]


async def _downstream(
    request: Request, service: str, url: str, params: dict[str, str]
) -> list[dict[str, Any]] | str:
    http: httpx.AsyncClient = request.app.state.http
    try:
        response = await http.get(
            f"{url.rstrip('/')}{AUDIT_PATH}",
            params=params,
            headers={"Authorization": f"Bearer {bearer_token(request)}"},
        )
    except httpx.HTTPError:
        return f"the {service} service's audit is unavailable"
    if response.status_code != 200:
        return f"the {service} service's audit is unavailable ({response.status_code})"
    entries: list[dict[str, Any]] = response.json()["entries"]
    return entries


@router.get("/v1/audit", response_model=AuditList)
async def audit(
    request: Request,
    access: WholeTenantAdmin,
    since: Annotated[AuditInstant | None, Query(description="Entries at or after")] = None,
    until: Annotated[AuditInstant | None, Query(description="Entries before")] = None,
    limit: AuditLimit = 100,
) -> AuditList:
    """Every write, sign-in and token issue for this tenant: who (``actor``,
    ``client_id``), what (``action``, ``target``, ``status``), when, from where (``ip``),
    from the gateway and every service. A service that cannot answer is named in
    ``warnings``; its entries are missing, never silently."""
    params = {"limit": str(limit)}
    if since is not None:
        params["since"] = since.isoformat()
    if until is not None:
        params["until"] = until.isoformat()
    urls = service_urls(request.app.state.settings)
    own = await audit_rows(request.app.state.db, access.tenant_id, since, until, limit)
    answers = await asyncio.gather(
        *(_downstream(request, service, urls[service], params) for service in DOWNSTREAM)
    )
    entries = list(own)
    warnings: list[str] = []
    for answer in answers:
        if isinstance(answer, str):
            warnings.append(answer)
        else:
            entries.extend(answer)
    entries.sort(key=lambda e: e["at"], reverse=True)
    return AuditList(
        entries=[AuditEntry.model_validate(e) for e in entries[:limit]], warnings=warnings
    )
