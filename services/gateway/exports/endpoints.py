"""``/v1/exports``: a tenant's whole data, from every service, as one zip."""

from __future__ import annotations

import base64
from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Depends, Request, Response
from fastapi.responses import StreamingResponse

from services.gateway.exports import service
from services.gateway.exports.schemas import ExportList, ExportOut
from shared.access import WholeTenantAdmin
from shared.auth import Principal, current_principal
from shared.deps import DbSession
from shared.errors import FieldError, InvalidInput
from shared.negotiation import list_header
from shared.openapi import IF_NONE_MATCH, LOCATED, TAGGED, ErrorBody
from shared.service import none_match_holds, require_json_body

router = APIRouter(prefix="/v1/exports", tags=["exports"])
# tenant:admin of the whole tenant itself: never grantable, so an agency cannot export a
# seller it works for, and not for a user limited to some stores.
Caller = Annotated[Principal, Depends(current_principal)]


# No body, or an empty object: an export has no options.
NO_OPTIONS = {
    "requestBody": {
        "required": False,
        "content": {"application/json": {"schema": {"type": "object", "maxProperties": 0}}},
    }
}


@router.post(
    "",
    status_code=202,
    response_model=ExportOut,
    responses={
        202: LOCATED,
        409: {
            "model": ErrorBody,
            "description": "An export of the tenant is running; `Location` is it",
        },
    },
    openapi_extra=NO_OPTIONS,
)
async def create_export(
    request: Request,
    response: Response,
    access: WholeTenantAdmin,
    principal: Caller,
    session: DbSession,
    background: BackgroundTasks,
) -> ExportOut:
    """Starts an export of all the tenant's data in every service (no body, or `{}`);
    poll `GET /v1/exports/{id}` for its progress until `status` is `ready`, then download
    `download_url`: a zip of `<service>/<table>.ndjson` files and a `manifest.json`
    with each file's rows, bytes and SHA-256. Secrets (hashes, keys) are never in it.
    One export runs at a time: asked while one runs, 409 names it (and `Location` is
    it): it began before, so it may not hold what was written since. The archives of
    the five newest are kept; an older one's is deleted when a new one starts, and it
    then says so (`failed`, with the reason in `error`).
    """
    body = (await request.body()).strip()
    if body:
        # Sent as text, even {} is no JSON to read: 415, as on every JSON route.
        require_json_body(request)
    if body not in (b"", b"{}"):
        # An export has no options: a body asking for some must not pass for taken.
        raise InvalidInput("an export takes no body", [FieldError("body", "must be empty or {}")])
    export = await service.create_export(session, access.tenant_id, principal.subject)
    # Started after the response, so after the commit: the runner's writes find the row.
    background.add_task(request.app.state.exports.start, export)
    response.headers["Location"] = f"/v1/exports/{export.id}"
    return service.out(export)


@router.get("", response_model=ExportList)
async def list_exports(access: WholeTenantAdmin, session: DbSession) -> ExportList:
    """The tenant's exports, newest first (at most 100)."""
    exports = await service.list_exports(session, access.tenant_id)
    return ExportList(exports=[service.out(e) for e in exports])


@router.get("/{export_id}", response_model=ExportOut)
async def get_export(export_id: str, access: WholeTenantAdmin, session: DbSession) -> ExportOut:
    """Status and progress; `download_url` once ready. Another tenant's export is 404."""
    return service.out(await service.readable_export(session, access.tenant_id, export_id))


@router.get(
    "/{export_id}/archive",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {"application/zip": {"schema": {"type": "string", "format": "binary"}}},
            "headers": TAGGED,
        },
        304: {
            "description": "The archive `If-None-Match` names: the client has it",
            "headers": TAGGED,
        },
        409: {"model": ErrorBody, "description": "The export is still running, or failed"},
    },
    openapi_extra={"parameters": [IF_NONE_MATCH]},
)
async def download_export(
    export_id: str, request: Request, access: WholeTenantAdmin, session: DbSession
) -> Response:
    """The zip, with its SHA-256 in `ETag` and `Digest`; 409 while running or failed;
    304 to `If-None-Match` naming it (a client that has the file downloads it once)."""
    export = await service.downloadable_export(session, access.tenant_id, export_id)
    sha256 = export.archive_sha256 or ""
    if none_match_holds(list_header(request.headers, "if-none-match"), f'"{sha256}"'):
        return Response(status_code=304, headers={"ETag": f'"{sha256}"'})
    headers = {
        "Content-Disposition": f'attachment; filename="lodestar-export-{export.id}.zip"',
        "Content-Length": str(export.size_bytes or 0),
        "ETag": f'"{sha256}"',
        "Digest": "sha-256=" + base64.b64encode(bytes.fromhex(sha256)).decode("ascii"),
        "Cache-Control": "private, no-store",
    }
    return StreamingResponse(
        service.archive_chunks(request.app.state.db, export.id),
        media_type="application/zip",
        headers=headers,
    )
