"""The push API through the gateway: validation, limits, duplicates and idempotency."""

from __future__ import annotations

import copy
from typing import Any

import httpx

from tests.conftest import NewTenant, TenantClient


def order_line(event_id: str, version: int = 1, **payload: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "event_id": event_id,
        "type": "order_line",
        "version": version,
        "source": {"platform": "amazon", "store_id": "acme-us", "marketplace": "US"},
        "occurred_at": "2026-03-01T07:15:00Z",
        "payload": {
            "order_id": f"o-{event_id}",
            "line_id": "1",
            "sku": "LAMP-01",
            "quantity": 1,
            "unit_price": {"amount": "9.99", "currency": "USD"},
            "status": "pending",
            "purchased_at": "2026-03-01T07:15:00Z",
        },
    }
    event["payload"].update(payload)
    return event


async def pending(http: httpx.AsyncClient, tenant: TenantClient) -> int:
    response = await http.get("/v1/events/outbox", headers=tenant.headers)
    assert response.status_code == 200, response.text
    value: int = response.json()["pending"]
    return value


async def test_bad_batch_is_refused_whole_with_every_error(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant()
    missing_sku = order_line("b1")
    del missing_sku["payload"]["sku"]
    bad_money = order_line("b2", unit_price={"amount": "ten", "currency": "USD"})
    wrong_type = copy.deepcopy(order_line("b3"))
    wrong_type["type"] = "sale"
    response = await http.post(
        "/v1/events",
        json={"events": [order_line("ok"), missing_sku, bad_money, wrong_type]},
        headers=tenant.headers,
    )
    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "invalid_input"
    found = {(e["index"], e["field"]) for e in body["errors"]}
    assert {(1, "payload.sku"), (2, "payload.unit_price.amount"), (3, "type")} <= found
    assert all(e["reason"] for e in body["errors"])
    # Nothing of the batch was kept, not even the valid event.
    again = await http.post(
        "/v1/events", json={"events": [order_line("ok")]}, headers=tenant.headers
    )
    assert again.json() == {"accepted": 1, "duplicates": 0}


async def test_malformed_bodies_name_the_field(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant(scopes=["ingest:write"])
    headers = {**tenant.headers, "Content-Type": "application/json"}
    not_json = await http.post("/v1/events", content=b"{nope", headers=headers)
    assert not_json.status_code == 422
    assert not_json.json()["errors"][0]["field"] == "body"
    no_list = await http.post("/v1/events", json={"event": []}, headers=tenant.headers)
    assert no_list.status_code == 422
    assert no_list.json()["errors"][0]["field"] == "events"
    empty = await http.post("/v1/events", json={"events": []}, headers=tenant.headers)
    assert empty.status_code == 422


async def test_more_than_5000_events_is_413(http: httpx.AsyncClient, new_tenant: NewTenant) -> None:
    tenant = await new_tenant(scopes=["ingest:write"])
    events = [order_line(f"big-{i}") for i in range(5001)]
    response = await http.post("/v1/events", json={"events": events}, headers=tenant.headers)
    assert response.status_code == 413
    assert response.json()["error"] == "payload_too_large"
    assert "5000" in response.json()["detail"]
    assert await pending(http, tenant) == 0


async def test_duplicates_and_versions_are_counted(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant()
    first = await http.post(
        "/v1/events",
        json={"events": [order_line("d1"), order_line("d2"), order_line("d1", version=2)]},
        headers=tenant.headers,
    )
    # d1 twice in one batch: the higher version is kept, the other is a duplicate.
    assert first.status_code == 202
    assert first.json() == {"accepted": 2, "duplicates": 1}
    second = await http.post(
        "/v1/events",
        json={"events": [order_line("d1", version=2), order_line("d2", version=1)]},
        headers=tenant.headers,
    )
    assert second.json() == {"accepted": 0, "duplicates": 2}
    third = await http.post(
        "/v1/events", json={"events": [order_line("d2", version=5)]}, headers=tenant.headers
    )
    assert third.json() == {"accepted": 1, "duplicates": 0}


async def test_same_event_id_in_two_tenants_is_two_events(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    one, two = await new_tenant(), await new_tenant()
    for tenant in (one, two):
        response = await http.post(
            "/v1/events", json={"events": [order_line("shared-id")]}, headers=tenant.headers
        )
        assert response.json() == {"accepted": 1, "duplicates": 0}


async def test_idempotency_key_replays_the_first_answer(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant()
    headers = {**tenant.headers, "Idempotency-Key": "push-42"}
    body = {"events": [order_line("i1"), order_line("i2")]}
    first = await http.post("/v1/events", json=body, headers=headers)
    replay = await http.post("/v1/events", json=body, headers=headers)
    assert first.status_code == replay.status_code == 202
    assert replay.json() == first.json() == {"accepted": 2, "duplicates": 0}
    # A different body under the same key is refused, naming the header.
    other = await http.post("/v1/events", json={"events": [order_line("i3")]}, headers=headers)
    assert other.status_code == 422
    assert other.json()["errors"][0]["field"] == "header.Idempotency-Key"
    too_long = await http.post(
        "/v1/events", json=body, headers={**tenant.headers, "Idempotency-Key": "k" * 300}
    )
    assert too_long.status_code == 422


async def test_a_failed_request_does_not_burn_its_idempotency_key(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant()
    headers = {**tenant.headers, "Idempotency-Key": "retry-me"}
    bad = order_line("r1", quantity=0)
    assert (
        await http.post("/v1/events", json={"events": [bad]}, headers=headers)
    ).status_code == 422
    fixed = await http.post("/v1/events", json={"events": [order_line("r1")]}, headers=headers)
    assert fixed.status_code == 202
    assert fixed.json() == {"accepted": 1, "duplicates": 0}


async def test_push_needs_a_token_and_the_ingest_scope(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    anonymous = await http.post("/v1/events", json={"events": [order_line("x")]})
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"].startswith('Bearer error="invalid_token"')
    reader = await new_tenant(scopes=["kpi:read"])
    refused = await http.post(
        "/v1/events", json={"events": [order_line("x")]}, headers=reader.headers
    )
    assert refused.status_code == 403
    assert refused.json()["error"] == "insufficient_scope"
    assert "ingest:write" in refused.json()["detail"]
