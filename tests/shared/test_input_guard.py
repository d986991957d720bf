"""The input guard on an app of its own: which bodies it reads for names given twice."""

from __future__ import annotations

import httpx
from fastapi import FastAPI, Request

from shared.input_guard import InputGuardMiddleware
from shared.service import error_response_at, json_field_of

TWICE = b'{"a": 1, "a": 2}'


def guarded(forwarded: str) -> FastAPI:
    app = FastAPI()

    @app.post("/{rest:path}")
    @app.delete("/{rest:path}")
    async def echo(request: Request) -> dict[str, int]:
        return {"bytes": len(await request.body())}

    app.add_middleware(
        InputGuardMiddleware,
        field_of=json_field_of,
        render=error_response_at,
        forwarded=lambda scope: scope["path"].startswith(forwarded),
    )
    return app


async def test_a_forwarded_body_is_left_to_the_service_that_reads_it() -> None:
    """The gateway hands a push on unread: the service's own guard reads its names,
    and parsing two megabytes twice more in the gateway bought nothing."""
    transport = httpx.ASGITransport(app=guarded("/v1/events"))
    async with httpx.AsyncClient(transport=transport, base_url="http://guard") as client:
        json = {"Content-Type": "application/json"}
        passed = await client.post("/v1/events", content=TWICE, headers=json)
        refused = await client.post("/v1/users", content=TWICE, headers=json)
    assert passed.status_code == 200, passed.text
    assert refused.status_code == 422
    assert refused.json()["errors"] == [{"field": "a", "reason": "given more than once"}]


async def test_a_delete_body_without_a_type_is_read_as_its_route_reads_it() -> None:
    """Erasing a tenant reads `{"confirm": ...}` from a DELETE's body, as JSON when it
    comes with no type: its names are checked as every other JSON body's are."""
    transport = httpx.ASGITransport(app=guarded("/v1/events"))
    async with httpx.AsyncClient(transport=transport, base_url="http://guard") as client:
        untyped = await client.request("DELETE", "/v1/tenants/t1", content=TWICE)
        unread = await client.request("DELETE", "/v1/grants/g1", content=TWICE)
    assert untyped.status_code == 422, untyped.text
    assert untyped.json()["errors"] == [{"field": "a", "reason": "given more than once"}]
    # No other DELETE's body is read, by the routes or here.
    assert unread.status_code == 200, unread.text
