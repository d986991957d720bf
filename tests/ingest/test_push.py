"""The push API: validation, limits, duplicates, idempotency and authorisation.

The contract tests go through the gateway with real OAuth tokens; those that look
into the outbox use an ingest service of their own (``ingest``)."""

from __future__ import annotations

import asyncio
import copy
import functools
import json
import random
import secrets
import threading
from typing import Any

import httpx
import pytest

from services.ingest.events import service
from shared.input_guard import misread_json
from shared.service import json_field_of
from tests.conftest import NewTenant, TenantClient
from tests.ingest.conftest import IngestService, MakeIngest, order_line
from tests.unreachable import refusing_port


async def pending(http: httpx.AsyncClient, tenant: TenantClient) -> int:
    response = await http.get("/v1/events/outbox", headers=tenant.headers)
    assert response.status_code == 200, response.text
    value: int = response.json()["pending"]
    return value


def new_tenant_id() -> str:
    return f"tn_{secrets.token_hex(4)}"


async def test_bad_batch_is_refused_whole_with_every_error(ingest: IngestService) -> None:
    tenant = new_tenant_id()
    missing_sku = order_line("b1")
    del missing_sku["payload"]["sku"]
    bad_money = order_line("b2", unit_price={"amount": "ten", "currency": "USD"})
    unknown_type = copy.deepcopy(order_line("b3"))
    unknown_type["type"] = "sale"
    naive = order_line("b4")
    naive["occurred_at"] = "2026-03-01T07:15:00"
    naive_payload = order_line("b5", purchased_at="2026-03-01 07:15:00")
    response = await ingest.push(
        tenant, [order_line("ok"), missing_sku, bad_money, unknown_type, naive, naive_payload]
    )
    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "invalid_input"
    assert "5 invalid event(s)" in body["detail"]
    found = {(e["index"], e["field"]) for e in body["errors"]}
    assert {
        (1, "payload.sku"),
        (2, "payload.unit_price.amount"),
        (3, "type"),
        (4, "occurred_at"),
        (5, "payload.purchased_at"),
    } <= found
    assert {e["index"] for e in body["errors"]} == {1, 2, 3, 4, 5}
    reasons = {(e["index"], e["field"]): e["reason"] for e in body["errors"]}
    assert reasons[(1, "payload.sku")] == "required"
    assert "offset" in reasons[(4, "occurred_at")]
    # Nothing of the batch was kept, not even the valid event.
    assert await ingest.outbox_rows(tenant) == 0
    assert await ingest.sql("SELECT count(*) FROM event_versions") == 0
    again = await ingest.push(tenant, [order_line("ok")])
    assert again.json() == {"accepted": 1, "duplicates": 0}


async def test_malformed_bodies_name_the_field(ingest: IngestService) -> None:
    tenant = new_tenant_id()
    headers = {**ingest.headers(tenant), "Content-Type": "application/json"}
    not_json = await ingest.client.post("/v1/events", content=b"{nope", headers=headers)
    assert not_json.status_code == 422
    assert not_json.json()["errors"] == [{"field": "body", "reason": "invalid JSON"}]
    bodies: list[object] = [{"event": []}, {"events": {"a": 1}}, [order_line("x")]]
    for body in bodies:
        no_list = await ingest.client.post("/v1/events", json=body, headers=headers)
        assert no_list.status_code == 422, body
        assert no_list.json()["errors"][0]["field"] == "events"
    # A typo beside the events is named, not silently dropped (every other body is strict).
    extra = {"events": [order_line("x0")], "idempotency_key": "k"}
    typo = await ingest.client.post("/v1/events", json=extra, headers=headers)
    assert typo.status_code == 422
    assert typo.json()["errors"] == [{"field": "idempotency_key", "reason": "unknown field"}]
    assert await ingest.outbox_rows(tenant) == 0
    empty = await ingest.client.post("/v1/events", json={"events": []}, headers=headers)
    assert empty.status_code == 422
    assert empty.json()["errors"][0] == {"field": "events", "reason": "at least one event"}
    not_an_object = await ingest.push(tenant, [order_line("x1"), "order_line"])  # type: ignore[list-item]
    assert not_an_object.status_code == 422
    assert [e["index"] for e in not_an_object.json()["errors"]] == [1]
    # Numbers beyond a double are JSON all the same: their field is named. NaN is no JSON.
    good = json.dumps(order_line("x2"))
    for written, reason in (
        ("1e400", "is too large a number"),
        ("9" * 30, "is too large a number"),
        # Beyond the 4,300 digits Python converts, which read as no JSON at all.
        ("-" + "9" * 5000, "is too large a number"),
    ):
        huge = good.replace('"quantity": 1', f'"quantity": {written}')
        body = f'{{"events": [{good}, {huge}]}}'.encode()
        answer = await ingest.client.post("/v1/events", content=body, headers=headers)
        assert answer.status_code == 422, answer.text
        assert answer.json()["errors"] == [
            {"index": 1, "field": "payload.quantity", "reason": reason}
        ], written
    not_a_number = good.replace('"quantity": 1', '"quantity": NaN')
    nan = f'{{"events": [{not_a_number}]}}'.encode()
    answer = await ingest.client.post("/v1/events", content=nan, headers=headers)
    assert answer.json()["errors"] == [{"field": "body", "reason": "invalid JSON"}]
    assert await ingest.outbox_rows(tenant) == 0


async def test_the_event_count_is_checked_before_validation(ingest: IngestService) -> None:
    tenant = new_tenant_id()
    # 5,001 invalid events: the limit answers first, without validating any of them.
    response = await ingest.push(tenant, [{"type": "nonsense"}] * 5001)
    assert response.status_code == 413
    assert response.json()["error"] == "payload_too_large"
    assert response.json()["errors"] == [
        {"field": "body", "reason": "at most 5000 events a request"}
    ]
    assert await ingest.outbox_rows(tenant) == 0


async def test_duplicates_and_higher_versions_are_counted_and_stored_once(
    ingest: IngestService,
) -> None:
    tenant = new_tenant_id()
    first = await ingest.push(
        tenant, [order_line("d1"), order_line("d2"), order_line("d1", version=2)]
    )
    # d1 twice in one batch, rising: both count as accepted, as if pushed one by one
    # (CONTRACT §3: only the same or a lower version is a duplicate); v2 is stored.
    assert first.status_code == 202
    assert first.json() == {"accepted": 3, "duplicates": 0}
    second = await ingest.push(
        tenant, [order_line("d1", version=2), order_line("d2", version=1), order_line("d1")]
    )
    assert second.json() == {"accepted": 0, "duplicates": 3}
    third = await ingest.push(tenant, [order_line("d2", version=5), order_line("d3")])
    assert third.json() == {"accepted": 2, "duplicates": 0}
    # Against what is stored (d3 v1), in batch order: v2 new, v2 again, v3 new, v1 old.
    fourth = await ingest.push(
        tenant, [order_line("d3", version=v) for v in (2, 2, 3, 1)] + [order_line("d4")]
    )
    assert fourth.json() == {"accepted": 3, "duplicates": 2}
    # One outbox row per id a push accepted, its highest version.
    assert await ingest.outbox_rows(tenant) == 6
    versions = await ingest.sql(
        "SELECT string_agg(event_id || ':' || version, ',' ORDER BY event_id) "
        "FROM event_versions WHERE tenant_id = $1",
        tenant,
    )
    assert versions == "d1:2,d2:5,d3:3,d4:1"
    outbox_versions = await ingest.sql(
        "SELECT string_agg(event_id || ':' || version, ',' ORDER BY id) "
        "FROM outbox WHERE tenant_id = $1",
        tenant,
    )
    assert outbox_versions == "d1:2,d2:1,d2:5,d3:1,d3:3,d4:1"


async def test_idempotency_key_replays_the_first_answer_and_stores_nothing(
    ingest: IngestService,
) -> None:
    tenant = new_tenant_id()
    key = {"Idempotency-Key": "push-42"}
    events = [order_line("i1"), order_line("i2"), order_line("i1")]
    first = await ingest.push(tenant, events, **key)
    assert first.status_code == 202
    assert first.json() == {"accepted": 2, "duplicates": 1}
    assert "idempotent-replayed" not in first.headers
    replay = await ingest.push(tenant, events, **key)
    assert replay.status_code == 202
    # The first answer, not "2 duplicates" as a new push of the same events would get,
    # and said to be a replay.
    assert replay.json() == first.json()
    assert replay.headers["idempotent-replayed"] == "true"
    assert await ingest.outbox_rows(tenant) == 2
    # Another tenant's key of the same name is its own.
    other = await ingest.push(new_tenant_id(), events, **key)
    assert other.json() == {"accepted": 2, "duplicates": 1}


async def test_idempotency_keys_are_each_callers_own(ingest: IngestService) -> None:
    """A seller's ERP, its shop app and two users of its dashboard each number their
    pushes from 1: one's key never refuses or replays another's push."""
    tenant = new_tenant_id()
    callers = {  # (client, subject)
        "erp": ("erp", "erp"),
        "shop": ("shop-app", "shop-app"),
        "ana": ("dashboard", "usr_ana"),
        "bo": ("dashboard", "usr_bo"),
    }

    async def push(caller: str, event_id: str) -> httpx.Response:
        client_id, subject = callers[caller]
        token = ingest.minter.mint(tenant, ["ingest:write"], client_id=client_id, sub=subject)
        return await ingest.client.post(
            "/v1/events",
            json={"events": [order_line(event_id)]},
            headers={"Authorization": f"Bearer {token}", "Idempotency-Key": "batch-1"},
        )

    for caller in callers:
        first = await push(caller, f"{caller}-1")
        assert first.status_code == 202, first.text
        assert first.json() == {"accepted": 1, "duplicates": 0}
        assert "idempotent-replayed" not in first.headers
    assert await ingest.outbox_rows(tenant) == 4
    # Each caller's own retry is still a replay, and its key with another body refused.
    replay = await push("ana", "ana-1")
    assert replay.headers["idempotent-replayed"] == "true"
    reused = await push("ana", "ana-2")
    assert reused.status_code == 422
    assert reused.json()["errors"][0]["field"] == "header.Idempotency-Key"
    assert await ingest.outbox_rows(tenant) == 4


async def test_idempotency_key_with_another_body_or_too_long_is_refused(
    ingest: IngestService,
) -> None:
    tenant = new_tenant_id()
    key = {"Idempotency-Key": "push-43"}
    assert (await ingest.push(tenant, [order_line("k1")], **key)).status_code == 202
    other = await ingest.push(tenant, [order_line("k2")], **key)
    assert other.status_code == 422
    assert other.json()["errors"] == [
        {"field": "header.Idempotency-Key", "reason": "already used with a different request body"}
    ]
    too_long = await ingest.push(tenant, [order_line("k3")], **{"Idempotency-Key": "k" * 256})
    assert too_long.status_code == 422
    assert too_long.json()["errors"][0]["field"] == "header.Idempotency-Key"
    blank = await ingest.push(tenant, [order_line("k3")], **{"Idempotency-Key": ""})
    assert blank.status_code == 422
    longest = await ingest.push(tenant, [order_line("k3")], **{"Idempotency-Key": "k" * 255})
    assert longest.status_code == 202
    assert await ingest.outbox_rows(tenant) == 2


async def test_a_retry_serialised_again_is_the_same_request(ingest: IngestService) -> None:
    tenant = new_tenant_id()
    events = [order_line("r1"), order_line("r2")]
    key = {"Idempotency-Key": "push-44"}
    first = await ingest.push(tenant, events, **key)
    assert first.json() == {"accepted": 2, "duplicates": 0}
    # Other spacing and another key order: the same JSON document.
    reordered = [dict(reversed(list(event.items()))) for event in events]
    body = json.dumps({"events": reordered}, indent=4).encode()
    retry = await ingest.client.post(
        "/v1/events",
        content=body,
        headers={**ingest.headers(tenant), **key, "Content-Type": "application/json"},
    )
    assert (retry.status_code, retry.json()) == (202, first.json())
    assert await ingest.outbox_rows(tenant) == 2


async def test_concurrent_replays_store_the_batch_once(ingest: IngestService) -> None:
    tenant = new_tenant_id()
    events = [order_line(f"c{n}") for n in range(200)]
    answers = await asyncio.gather(
        *(ingest.push(tenant, events, **{"Idempotency-Key": "same"}) for _ in range(6))
    )
    assert [a.status_code for a in answers] == [202] * 6
    assert [a.json() for a in answers] == [{"accepted": 200, "duplicates": 0}] * 6
    assert await ingest.outbox_rows(tenant) == 200


async def test_concurrent_pushes_of_one_event_accept_it_once(ingest: IngestService) -> None:
    tenant = new_tenant_id()
    answers = await asyncio.gather(*(ingest.push(tenant, [order_line("race")]) for _ in range(6)))
    assert sorted(a.json()["accepted"] for a in answers) == [0, 0, 0, 0, 0, 1]
    assert await ingest.outbox_rows(tenant) == 1


async def test_concurrent_pushes_of_the_same_events_in_other_orders_all_pass(
    ingest: IngestService,
) -> None:
    tenant = new_tenant_id()
    events = [order_line(f"o{n:04d}") for n in range(1000)]
    orders = [events, events[::-1], events[500:] + events[:500], events[250:] + events[:250]]
    for _ in range(2):
        answers = await asyncio.gather(*(ingest.push(tenant, batch) for batch in orders))
        # Each waits for the rows the others hold, in one order: none deadlocks.
        assert [a.status_code for a in answers] == [202] * 4, [a.text for a in answers]
    assert sum(a.json()["accepted"] for a in answers) == 0
    assert await ingest.outbox_rows(tenant) == 1000


async def test_concurrent_pushes_of_several_versions_each_all_pass(ingest: IngestService) -> None:
    tenant = new_tenant_id()
    shuffle = random.Random(7).shuffle
    versions = [order_line(f"v{n:03d}", version=v) for n in range(100) for v in (1, 2, 3, 4)]
    statuses: list[int] = []
    fourth_versions_pushed: set[str] = set()
    for _ in range(4):
        batches = []
        for _ in range(4):
            batch = list(versions)
            shuffle(batch)
            batches.append(batch[:200])
            fourth_versions_pushed |= {e["event_id"] for e in batch[:200] if e["version"] == 4}
        answers = await asyncio.gather(*(ingest.push(tenant, batch) for batch in batches))
        statuses += [a.status_code for a in answers]
    assert statuses == [202] * 16
    highest = await ingest.sql(
        "SELECT count(*) FROM event_versions WHERE tenant_id = $1 AND version = 4", tenant
    )
    assert highest == len(fourth_versions_pushed)


async def test_pushes_naming_ids_twice_never_deadlock(
    ingest: IngestService, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each push locks all its ids in one pass in id order, so none waits for a push
    # that waits for it: one attempt each is enough, with no retry to hide a deadlock.
    db = ingest.app.state.db
    monkeypatch.setattr(db, "transact", functools.partial(db.transact, attempts=1))
    tenant = new_tenant_id()
    lines = [f"d{n:03d}" for n in range(300)]
    batches = []
    for first in range(1, 5):
        for order in range(4):
            pushed = random.Random(first * 10 + order).sample(lines, 150)
            batch = [order_line(i, version=first) for i in pushed[:75]]
            batch += [order_line(i, version=first + 1) for i in pushed[:75]]
            batch += [order_line(i, version=first) for i in pushed[75:]]
            random.Random(order).shuffle(batch)
            batches.append(batch)
    for _ in range(2):
        answers = await asyncio.gather(*(ingest.push(tenant, batch) for batch in batches))
        assert [a.status_code for a in answers] == [202] * 16, [a.text for a in answers]
    newest = await ingest.sql(
        "SELECT max(version) FROM event_versions WHERE tenant_id = $1", tenant
    )
    assert newest == 5
    assert (
        await ingest.sql(
            "SELECT count(*) FROM event_versions WHERE tenant_id = $1 AND version = 0", tenant
        )
        == 0
    )


async def test_a_field_given_twice_in_one_object_is_refused(ingest: IngestService) -> None:
    """JSON parsers keep one of two values given under one name (the last, here): an
    ERP writing a quantity and then its correction would have one counted silently."""
    tenant = new_tenant_id()
    line = json.dumps(order_line("twice"))
    twice_in_payload = line.replace('"quantity": 1', '"quantity": 2, "quantity": 9')
    twice_at_top = line.replace('"version": 1', '"version": 1, "version": 5')
    assert twice_in_payload != line and twice_at_top != line
    body = f'{{"events": [{line.replace("twice", "once")}, {twice_in_payload}, {twice_at_top}]}}'
    refused = await ingest.client.post(
        "/v1/events",
        content=body,
        headers={**ingest.headers(tenant), "Content-Type": "application/json"},
    )
    assert refused.status_code == 422, refused.text
    assert refused.json()["errors"] == [
        {"index": 1, "field": "payload.quantity", "reason": "given more than once"},
        {"index": 2, "field": "version", "reason": "given more than once"},
    ]
    wrapped = await ingest.client.post(
        "/v1/events",
        content=f'{{"events": [], "events": [{line}]}}',
        headers={**ingest.headers(tenant), "Content-Type": "application/json"},
    )
    assert wrapped.status_code == 422
    assert wrapped.json()["errors"] == [{"field": "events", "reason": "given more than once"}]
    assert await ingest.outbox_rows(tenant) == 0


def test_a_field_given_twice_is_found_whatever_else_the_text_holds() -> None:
    """Pushes are first checked by counting colons; whatever could upset the count
    sends a push to the parse that sees each name, so no name given twice gets through."""
    line = json.dumps(order_line("counted"))
    twice = line.replace('"quantity": 1', '"quantity": 2, "quantity": 9')
    for quirk in (
        '"carrier" : "dhl", ',  # a key spaced from its colon
        '"carrier": "\\u003a", ',  # an escaped colon
        '"carrier": ":dhl", ',  # a string that starts with a colon
        '"carrier": "a\\":b", ',  # an escaped quote before a colon
        '"carrier": "\\u0022", ',  # an escaped quote
        '"carrier": "\\u003A\\u003a", ',  # escaped colons
        '"carrier": "12:00", ',  # a colon in a string
        '"deep": ' + "[" * 300 + "]" * 300 + ", ",  # deeper than orjson writes
    ):
        body = twice.replace('"payload": {', '"payload": {' + quirk, 1)
        named = misread_json(f'{{"events": [{body}]}}'.encode(), json_field_of)
        assert [(e.index, e.field) for e in named] == [(0, "payload.quantity")], quirk
        once = line.replace('"payload": {', '"payload": {' + quirk, 1)
        assert misread_json(f'{{"events": [{once}]}}'.encode(), json_field_of) == [], quirk
    # Any name may be a field's, even one of a NUL.
    marked = twice.replace('"payload": {', '"\\u0000twice": 5, "payload": {', 1)
    named = misread_json(f'{{"events": [{marked}]}}'.encode(), json_field_of)
    assert [(e.index, e.field) for e in named] == [(0, "payload.quantity")]
    # One name written two ways is one name given twice.
    spelt = line.replace('"quantity": 1', '"qu\\u0061ntity": 2, "quantity": 1')
    assert misread_json(f'{{"events": [{spelt}]}}'.encode(), json_field_of) != []
    # Numbers beyond a double, which orjson refuses, are read to look.
    huge = twice.replace('"version": 1', '"version": 1e400')
    assert misread_json(f'{{"events": [{huge}]}}'.encode(), json_field_of) != []


async def test_a_failed_request_does_not_burn_its_idempotency_key(ingest: IngestService) -> None:
    tenant = new_tenant_id()
    key = {"Idempotency-Key": "retry-me"}
    bad = await ingest.push(tenant, [order_line("r1", quantity=0)], **key)
    assert bad.status_code == 422
    fixed = await ingest.push(tenant, [order_line("r1")], **key)
    assert fixed.status_code == 202
    assert fixed.json() == {"accepted": 1, "duplicates": 0}


async def test_the_service_itself_checks_token_and_scope(ingest: IngestService) -> None:
    tenant = new_tenant_id()
    body = {"events": [order_line("x")]}
    anonymous = await ingest.client.post("/v1/events", json=body)
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"].startswith('Bearer error="invalid_token"')
    reader = await ingest.client.post(
        "/v1/events", json=body, headers=ingest.headers(tenant, ("kpi:read",))
    )
    assert reader.status_code == 403
    assert reader.json()["error"] == "insufficient_scope"
    assert await ingest.sql("SELECT count(*) FROM outbox") == 0


async def test_push_without_a_tenant_in_the_token_is_refused(ingest: IngestService) -> None:
    token = ingest.minter.mint(None, ["ingest:write"])
    response = await ingest.client.post(
        "/v1/events",
        json={"events": [order_line("x")]},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 403
    assert await ingest.sql("SELECT count(*) FROM outbox") == 0


async def test_openapi_documents_the_push(ingest: IngestService) -> None:
    document = (await ingest.client.get("/openapi.json")).json()
    push = document["paths"]["/v1/events"]["post"]
    schema = push["requestBody"]["content"]["application/json"]["schema"]
    assert schema["required"] == ["events"]
    assert schema["properties"]["events"]["maxItems"] == 5000
    items = schema["properties"]["events"]["items"]
    assert "order_line" in items["discriminator"]["mapping"]
    # Each variant names its payload's schema, which the document holds.
    line = items["discriminator"]["mapping"]["order_line"].rsplit("/", 1)[-1]
    payload = document["components"]["schemas"][line]["properties"]["payload"]["$ref"]
    assert payload.rsplit("/", 1)[-1] in document["components"]["schemas"]
    assert {"202", "413", "422"} <= set(push["responses"])
    accepted = push["responses"]["202"]["content"]["application/json"]["schema"]["$ref"]
    assert accepted.endswith("/PushAccepted")
    assert set(document["components"]["schemas"]["PushAccepted"]["properties"]) == {
        "accepted",
        "duplicates",
    }
    assert push["responses"]["413"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/ErrorBody"
    )
    parameters = {p["name"] for p in push.get("parameters", [])}
    assert "Idempotency-Key" in parameters
    # Every count tells its ceiling, as a quantity does.
    snapshot = document["components"]["schemas"]["InventorySnapshot"]["properties"]
    for count in ("on_hand", "inbound", "reserved"):
        field = snapshot[count].get("anyOf", [snapshot[count]])[0]
        assert (field["minimum"], field["maximum"]) == (0, 2**31 - 1), count


# Through the gateway, with tokens from its OAuth server.


async def test_push_through_the_gateway_is_accepted(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant(scopes=["ingest:write"])
    response = await http.post(
        "/v1/events", json={"events": [order_line("g1"), order_line("g2")]}, headers=tenant.headers
    )
    assert response.status_code == 202
    assert response.json() == {"accepted": 2, "duplicates": 0}


async def test_more_than_5000_events_is_413(http: httpx.AsyncClient, new_tenant: NewTenant) -> None:
    tenant = await new_tenant(scopes=["ingest:write"])
    events = [order_line(f"big-{i}") for i in range(5001)]
    response = await http.post("/v1/events", json={"events": events}, headers=tenant.headers)
    assert response.status_code == 413
    assert response.json()["error"] == "payload_too_large"
    assert "at most 5000" in response.json()["detail"]
    assert await pending(http, tenant) == 0


async def test_same_event_id_in_two_tenants_is_two_events(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    one, two = await new_tenant(), await new_tenant()
    for tenant in (one, two):
        response = await http.post(
            "/v1/events", json={"events": [order_line("shared-id")]}, headers=tenant.headers
        )
        assert response.json() == {"accepted": 1, "duplicates": 0}


async def test_push_needs_a_token_and_the_ingest_scope(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    anonymous = await http.post("/v1/events", json={"events": [order_line("x")]})
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"].startswith('Bearer error="invalid_token"')
    forged = await http.post(
        "/v1/events",
        json={"events": [order_line("x")]},
        headers={"Authorization": "Bearer not.a.token"},
    )
    assert forged.status_code == 401
    reader = await new_tenant(scopes=["kpi:read"])
    refused = await http.post(
        "/v1/events", json={"events": [order_line("x")]}, headers=reader.headers
    )
    assert refused.status_code == 403
    assert refused.json()["error"] == "insufficient_scope"
    assert "ingest:write" in refused.json()["detail"]
    assert 'error="insufficient_scope"' in refused.headers["www-authenticate"]


async def test_a_new_version_cannot_change_the_events_type(ingest: IngestService) -> None:
    """The order line would stay counted where it was while the fee counted too."""
    tenant = new_tenant_id()
    assert (await ingest.push(tenant, [order_line("tc")])).status_code == 202
    fee = {
        **order_line("tc"),
        "type": "fee",
        "version": 2,
        "payload": {
            "fee_type": "commission",
            "amount": {"amount": "1.50", "currency": "USD"},
            "charged_at": "2026-03-01T07:15:00Z",
        },
    }
    refused = await ingest.push(tenant, [order_line("other"), fee])
    assert refused.status_code == 422
    assert refused.json()["errors"] == [
        {"index": 1, "field": "type",
         "reason": "event tc was accepted as order_line; a new version cannot change its type"}
    ]  # fmt: skip
    # Refused whole: the other event of the batch was not stored either.
    assert await ingest.outbox_rows(tenant) == 1
    # The same type at a higher version still replaces it.
    again = await ingest.push(tenant, [{**order_line("tc"), "version": 2}])
    assert again.json() == {"accepted": 1, "duplicates": 0}


async def test_one_batch_cannot_change_an_events_type_either(ingest: IngestService) -> None:
    """Only a batch's highest version of an event is kept: an order line and a fee of
    one id in one request left the fee alone, the sale gone, where two requests are
    refused. Either order of the two is refused whole, naming the later one."""
    tenant = new_tenant_id()
    fee = {
        **order_line("tc"),
        "type": "fee",
        "payload": {
            "fee_type": "commission",
            "amount": {"amount": "7.00", "currency": "USD"},
            "charged_at": "2026-03-01T07:15:00Z",
        },
    }
    line = order_line("tc")
    for first, second in ((line, {**fee, "version": 2}), (fee, {**line, "version": 2})):
        refused = await ingest.push(tenant, [first, order_line("other"), second])
        assert refused.status_code == 422
        assert refused.json()["errors"] == [
            {"index": 2, "field": "type",
             "reason": f"event tc is pushed as {first['type']} at index 0 of this batch; "
                       "a new version cannot change its type"}
        ]  # fmt: skip
    assert await ingest.outbox_rows(tenant) == 0
    # Versions of one type in one batch stay what they were: the highest is kept.
    kept = await ingest.push(tenant, [line, {**line, "version": 2}])
    assert kept.json() == {"accepted": 2, "duplicates": 0}
    # A same or lower version of another type after it is a duplicate, as it is when
    # pushed on its own: the batch is not refused.
    lower = await ingest.push(new_tenant_id(), [{**line, "version": 2}, fee])
    assert (lower.status_code, lower.json()) == (202, {"accepted": 1, "duplicates": 1})
    same = await ingest.push(new_tenant_id(), [{**line, "version": 2}, {**fee, "version": 2}])
    assert (same.status_code, same.json()) == (202, {"accepted": 1, "duplicates": 1})


async def test_a_misspelt_parameter_is_refused_not_ignored(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    """An agency writing ``tenantid=`` for ``tenant_id=`` would push into its own
    tenant: an unknown parameter is refused, once the caller is known to be allowed."""
    tenant = await new_tenant(scopes=["ingest:write", "tenant:admin"])
    body = {"events": [order_line(f"mis-{secrets.token_hex(3)}")]}
    pushed = await http.post(
        "/v1/events", params={"tenantid": "someone"}, json=body, headers=tenant.headers
    )
    assert pushed.status_code == 422, pushed.text
    assert pushed.json()["errors"] == [{"field": "tenantid", "reason": "unknown parameter"}]
    settings = await http.get("/v1/settings/kpi", params={"verbose": "1"}, headers=tenant.headers)
    assert settings.status_code == 422
    assert settings.json()["errors"] == [{"field": "verbose", "reason": "unknown parameter"}]
    anonymous = await http.post("/v1/events", params={"tenantid": "someone"}, json=body)
    assert anonymous.status_code == 401
    # What the route declares is taken.
    named = await http.post(
        "/v1/events", params={"tenant_id": tenant.tenant_id}, json=body, headers=tenant.headers
    )
    assert named.status_code == 202, named.text
    # Nothing of the refused push was kept: the same event is new.
    assert named.json() == {"accepted": 1, "duplicates": 0}


async def test_a_push_sent_as_another_type_than_json_is_415(ingest: IngestService) -> None:
    tenant = new_tenant_id()
    body = json.dumps({"events": [order_line("ct-1")]}).encode()
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "text/csv"):
        refused = await ingest.client.post(
            "/v1/events",
            content=body,
            headers={**ingest.headers(tenant), "Content-Type": content_type},
        )
        assert refused.status_code == 415, (content_type, refused.text)
        assert refused.json()["errors"] == [
            {"field": "header.Content-Type", "reason": "must be application/json"}
        ]
    # No type at all is read as JSON, as FastAPI reads it; a charset is no other type.
    for headers in ({}, {"Content-Type": "application/json; charset=utf-8"}):
        taken = await ingest.client.post(
            "/v1/events", content=body, headers={**ingest.headers(tenant), **headers}
        )
        assert taken.status_code == 202, taken.text
    assert await ingest.outbox_rows(tenant) == 1


async def test_a_limited_caller_counts_only_its_own_stores_pending_events(
    make_ingest: MakeIngest,
) -> None:
    tenant = new_tenant_id()
    # No broker listens: every accepted event waits in the outbox.
    with refusing_port() as down:
        async with make_ingest(KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{down}") as ingest:
            us = [order_line(f"us-{n}") for n in range(3)]
            mx = [
                {**order_line(f"mx-{n}"), "source": {"platform": "amazon", "store_id": "acme-mx",
                                                     "marketplace": "MX"}}
                for n in range(2)
            ]  # fmt: skip
            assert (await ingest.push(tenant, us + mx)).status_code == 202
            assert await ingest.pending(tenant) == 5

            async def pending(**limits: list[str]) -> int:
                token = ingest.minter.mint(tenant, ["ingest:write"], limits=limits)
                answer = await ingest.client.get(
                    "/v1/events/outbox", headers={"Authorization": f"Bearer {token}"}
                )
                assert answer.status_code == 200, answer.text
                value: int = answer.json()["pending"]
                return value

            assert await pending(stores=["acme-us"]) == 3
            assert await pending(marketplaces=["MX"]) == 2
            assert await pending(stores=["acme-us"], marketplaces=["MX"]) == 0
            assert await pending(categories=["home"]) == 5


async def test_a_caller_limited_to_categories_pushes_order_lines_of_those_only(
    ingest: IngestService,
) -> None:
    tenant = new_tenant_id()
    token = ingest.minter.mint(tenant, ["ingest:write"], limits={"categories": ["Lamps"]})
    bearer = {"Authorization": f"Bearer {token}"}

    async def push(*events: Any) -> httpx.Response:
        return await ingest.client.post("/v1/events", json={"events": list(events)}, headers=bearer)

    lamp = order_line("lamp", category="Lamps")
    assert (await push(lamp)).status_code == 202
    refused = await push(order_line("rug", category="Rugs"), order_line("none"), lamp)
    assert refused.status_code == 403
    assert [(e["index"], e["field"], e["reason"]) for e in refused.json()["errors"]] == [
        (0, "payload.category", "category Rugs is outside this caller's reach"),
        (1, "payload.category", "category (none) is outside this caller's reach"),
    ]
    rate = {
        "event_id": "fx", "type": "fx_rate",
        "source": {"platform": "amazon", "store_id": "acme-us", "marketplace": "US"},
        "occurred_at": "2026-03-01T00:00:00Z",
        "payload": {"date": "2026-03-01", "base": "USD", "quote": "MXN", "rate": "17"},
    }  # fmt: skip
    tenant_wide = await push(rate)
    assert tenant_wide.status_code == 403
    assert tenant_wide.json()["errors"][0]["field"] == "type"
    # Nor anything but order lines: a refund names an order of any category.
    refund = {
        **lamp, "event_id": "rf", "type": "refund",
        "payload": {"order_id": "O-other", "amount": {"amount": "999.00", "currency": "USD"},
                    "refunded_at": "2026-03-02T00:00:00Z"},
    }  # fmt: skip
    not_a_line = await push(refund)
    assert not_a_line.status_code == 403
    assert not_a_line.json()["errors"] == [
        {"index": 0, "field": "type",
         "reason": "refund names no category; this caller may push order lines only"}
    ]  # fmt: skip
    # Another category's line cannot be renamed into its own, and so cancelled away.
    chair = order_line("chair", category="Chairs", sku="CHAIR-1")
    assert (await ingest.push(tenant, [chair])).status_code == 202
    taken = await push(order_line("chair", version=2, category="Lamps", status="cancelled"))
    assert taken.status_code == 403, taken.text
    assert taken.json()["errors"][0]["field"] == "event_id"
    # Its own line it may correct.
    assert (await push(order_line("lamp", version=2, category="Lamps"))).status_code == 202
    # A SKU another category sells is not its to sell: one line under Lamps would
    # hand it that SKU's fees, ads and traffic. A SKU of its own, or a new one, is.
    chair_sku = await push(order_line("mine", category="Lamps", sku="CHAIR-SKU"))
    assert chair_sku.status_code == 202, chair_sku.text
    sold = await ingest.push(tenant, [order_line("chair2", category="Chairs", sku="CHAIR-9")])
    assert sold.status_code == 202
    relabel = await push(order_line("mine2", category="Lamps", sku="CHAIR-9"))
    assert relabel.status_code == 403
    assert relabel.json()["errors"] == [
        {"index": 0, "field": "payload.sku",
         "reason": "SKU CHAIR-9 is sold under another category too"}
    ]  # fmt: skip
    # Nor a SKU whose traffic no line has categorized yet: it would be Lamps'. A Lamps
    # SKU with traffic of its own is its to sell.
    traffic = {
        **order_line("tr"), "type": "traffic",
        "payload": {"date": "2026-03-01", "sku": "VISITED", "sessions": 5},
    }  # fmt: skip
    own_traffic = {
        **traffic,
        "event_id": "tr-own",
        "payload": {**traffic["payload"], "sku": "CHAIR-SKU"},
    }
    assert (await ingest.push(tenant, [traffic, own_traffic])).status_code == 202
    visited = await push(order_line("mine3", category="Lamps", sku="VISITED"))
    assert visited.status_code == 403
    assert visited.json()["errors"] == [
        {"index": 0, "field": "payload.sku",
         "reason": "SKU VISITED has fees, ads, traffic or stock of no category"}
    ]  # fmt: skip
    assert (await push(order_line("mine4", category="Lamps", sku="CHAIR-SKU"))).status_code == 202


MONEY_300 = {"amount": "300.00", "currency": "USD"}


def _in_store(event: dict[str, Any], store: str, marketplace: str = "US") -> dict[str, Any]:
    return {
        **event,
        "source": {"platform": "amazon", "store_id": store, "marketplace": marketplace},
    }


async def test_a_caller_limited_to_stores_names_no_category_another_store_sells_a_sku_under(
    ingest: IngestService,
) -> None:
    """A SKU's category across the tenant is its newest line's: one line of an agency's
    store, even cancelled, would file the seller's other stores' ads, fees and stock of
    that SKU under the agency's choice."""
    tenant = new_tenant_id()
    seller_line = _in_store(order_line("s2-1", sku="SECRET", category="secret-cat"), "s2")
    uncategorized = _in_store(order_line("s2-2", sku="PLAIN"), "s2")
    assert (await ingest.push(tenant, [seller_line, uncategorized])).status_code == 202
    token = ingest.minter.mint(tenant, ["ingest:write"], limits={"stores": ["s1"]})
    bearer = {"Authorization": f"Bearer {token}"}

    async def push(*events: Any) -> httpx.Response:
        return await ingest.client.post("/v1/events", json={"events": list(events)}, headers=bearer)

    hijack = order_line("s1-1", sku="SECRET", category="Agency-Chosen", status="cancelled")
    relabel = order_line("s1-2", sku="PLAIN", category="Agency-Chosen")
    refused = await push(_in_store(hijack, "s1"), _in_store(relabel, "s1"))
    assert refused.status_code == 403, refused.text
    reason = "SKU {} is sold under another category outside what this caller may reach"
    assert refused.json()["errors"] == [
        {"index": 0, "field": "payload.category", "reason": reason.format("SECRET")},
        {"index": 1, "field": "payload.category", "reason": reason.format("PLAIN")},
    ]
    # The same category, no category at all, or a SKU sold nowhere else are its to push.
    allowed = [
        order_line("s1-3", sku="SECRET", category="secret-cat"),
        order_line("s1-4", sku="SECRET"),
        order_line("s1-5", sku="OWN", category="Agency-Chosen"),
    ]
    answer = await push(*(_in_store(e, "s1") for e in allowed))
    assert answer.status_code == 202, answer.text
    # Its own store's lines under its own category do not bind it.
    assert (
        await push(_in_store(order_line("s1-6", sku="OWN", category="Other"), "s1"))
    ).status_code == 202
    # A SKU the seller only advertises (or stocks) elsewhere: its ads there would take
    # the agency's category. Where a line there names one, the same category is fine.
    ads = {
        **order_line("ads-s2"), "type": "ad_spend",
        "source": {"platform": "amazon", "store_id": "s2", "marketplace": "US"},
        "payload": {"date": "2026-03-01", "campaign_id": "c1", "sku": "ADS-ONLY",
                    "impressions": 100, "clicks": 3, "cost": MONEY_300,
                    "attributed_sales": MONEY_300, "attributed_orders": 1},
    }  # fmt: skip
    ads_of_secret = {
        **ads,
        "event_id": "ads-s2-secret",
        "payload": {**ads["payload"], "sku": "SECRET"},
    }
    assert (await ingest.push(tenant, [ads, ads_of_secret])).status_code == 202
    advertised = await push(_in_store(order_line("s1-7", sku="ADS-ONLY", category="Mine"), "s1"))
    assert advertised.status_code == 403, advertised.text
    assert advertised.json()["errors"] == [
        {"index": 0, "field": "payload.category",
         "reason": "SKU ADS-ONLY has fees, ads, traffic or stock outside what this caller may reach"}
    ]  # fmt: skip
    same = await push(_in_store(order_line("s1-8", sku="SECRET", category="secret-cat"), "s1"))
    assert same.status_code == 202, same.text
    # A caller limited to marketplaces is held to the same rule.
    us_only = ingest.minter.mint(tenant, ["ingest:write"], limits={"marketplaces": ["US"]})
    mx_line = _in_store(order_line("mx-1", sku="MX-SKU", category="mx-cat"), "s3", "MX")
    assert (await ingest.push(tenant, [mx_line])).status_code == 202
    us_relabel = await ingest.client.post(
        "/v1/events",
        json={"events": [order_line("us-1", sku="MX-SKU", category="us-cat")]},
        headers={"Authorization": f"Bearer {us_only}"},
    )
    assert us_relabel.status_code == 403, us_relabel.text


async def test_a_limited_caller_never_replaces_an_event_pushed_beside_it(
    ingest: IngestService,
) -> None:
    """Its checks read what was accepted before it: the seller's push of the same new
    id, committed between those checks and its writes, was replaced unchecked."""
    tenant = new_tenant_id()
    token = ingest.minter.mint(tenant, ["ingest:write"], limits={"stores": ["s1"]})
    bearer = {"Authorization": f"Bearer {token}"}
    outcomes = []
    for round_ in range(12):
        event_id = f"race-{round_}"
        seller, agency = await asyncio.gather(
            ingest.push(tenant, [_in_store(order_line(event_id, unit_price=MONEY_300), "s2")]),
            ingest.client.post(
                "/v1/events",
                json={"events": [_in_store(order_line(event_id, version=5), "s1")]},
                headers=bearer,
            ),
        )
        outcomes.append((seller.json().get("accepted"), agency.status_code, agency.json()))
        stored = await ingest.sql(
            "SELECT store_id FROM event_versions WHERE tenant_id = $1 AND event_id = $2",
            tenant,
            event_id,
        )
        if seller.json().get("accepted") == 1:
            # Accepted for s2, it stays there: the agency's higher version is refused.
            assert stored == "s2", outcomes
            assert agency.status_code == 403, outcomes


async def test_a_limited_caller_adds_nothing_to_an_order_it_may_not_wholly_see(
    ingest: IngestService,
) -> None:
    """A new line, a refund or a defect under the id of another's order moved that order's
    date, cancellation and defects for everyone, and told the caller when it was placed."""
    tenant = new_tenant_id()
    cancelled_lamp = order_line("l1", category="Lamps", order_id="O-1", status="cancelled")
    assert (await ingest.push(tenant, [cancelled_lamp])).status_code == 202

    def bearer(limits: dict[str, list[str]]) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {ingest.minter.mint(tenant, ['ingest:write'], limits=limits)}"
        }

    rugs, gb = bearer({"categories": ["Rugs"]}), bearer({"marketplaces": ["GB"]})
    into_lamps = order_line("r1", category="Rugs", sku="RUG-1", order_id="O-1")
    gb_source = {"platform": "amazon", "store_id": "acme-us", "marketplace": "GB"}
    defect = {
        **order_line("d1"), "type": "order_defect", "source": gb_source,
        "payload": {"order_id": "O-1", "kind": "chargeback",
                    "reported_at": "2026-03-02T00:00:00Z"},
    }  # fmt: skip
    for headers, event in (
        (rugs, into_lamps),
        (gb, {**into_lamps, "source": gb_source}),
        (gb, defect),
    ):
        refused = await ingest.client.post("/v1/events", json={"events": [event]}, headers=headers)
        assert refused.status_code == 403, refused.text
        assert refused.json()["errors"] == [
            {"index": 0, "field": "payload.order_id",
             "reason": "order O-1 holds events outside what this caller may reach"}
        ]  # fmt: skip
    # Nor take its own line out of an order it shares with another category: the rest
    # of the order would change date and cancellation for everyone.
    shared = [
        order_line("s-lamp", category="Lamps", order_id="O-3"),
        order_line("s-rug", category="Rugs", sku="RUG-1", order_id="O-3"),
    ]
    assert (await ingest.push(tenant, shared)).status_code == 202
    moved = order_line("s-rug", version=2, category="Rugs", sku="RUG-1", order_id="O-4")
    answer = await ingest.client.post("/v1/events", json={"events": [moved]}, headers=rugs)
    assert answer.status_code == 403, answer.text
    assert answer.json()["errors"][0]["reason"] == (
        "order O-3 holds events outside what this caller may reach"
    )
    # Nor give a category (and a date) to an order of nothing but a refund.
    refund = {
        **order_line("rf-1"), "type": "refund",
        "payload": {"order_id": "O-5", "amount": {"amount": "7.77", "currency": "USD"},
                    "refunded_at": "2026-03-02T00:00:00Z"},
    }  # fmt: skip
    assert (await ingest.push(tenant, [refund])).status_code == 202
    claim = [order_line("r-claim", category="Rugs", sku="RUG-1", order_id="O-5")]
    answer = await ingest.client.post("/v1/events", json={"events": claim}, headers=rugs)
    assert answer.status_code == 403, answer.text
    # An order of its own, new or wholly in reach, it may add to.
    own = [order_line("r2", category="Rugs", sku="RUG-1", order_id="O-2")]
    assert (
        await ingest.client.post("/v1/events", json={"events": own}, headers=rugs)
    ).status_code == 202
    more = [order_line("r3", category="Rugs", sku="RUG-1", order_id="O-2")]
    assert (
        await ingest.client.post("/v1/events", json={"events": more}, headers=rugs)
    ).status_code == 202


async def test_two_categories_cannot_both_add_to_a_new_order_at_once(
    ingest: IngestService,
) -> None:
    """Of two users limited to two categories adding a line each to one new order at
    once, exactly one does: the other's order would hold a line it may not see."""
    tenant = new_tenant_id()
    for attempt in range(5):
        order = f"SHARED-{attempt}"
        answers = await asyncio.gather(
            *(
                ingest.client.post(
                    "/v1/events",
                    json={"events": [order_line(f"{c}-{order}", category=c, sku=f"{c}-{order}",
                                                order_id=order)]},
                    headers={"Authorization": "Bearer " + ingest.minter.mint(
                        tenant, ["ingest:write"], limits={"categories": [c]})},
                )
                for c in ("Lamps", "Chairs")
            )
        )  # fmt: skip
        assert sorted(a.status_code for a in answers) == [202, 403], [a.text for a in answers]


async def test_two_categories_cannot_both_sell_a_new_sku_at_once(ingest: IngestService) -> None:
    """The SKU check and the line it lets in are one step: of two users limited to two
    categories pushing one new SKU at once, exactly one sells it."""
    tenant = new_tenant_id()
    lamps, chairs = (
        {
            "Authorization": f"Bearer {ingest.minter.mint(tenant, ['ingest:write'], limits={'categories': [c]})}"
        }
        for c in ("Lamps", "Chairs")
    )
    for attempt in range(5):
        sku = f"RACE-{attempt}"
        answers = await asyncio.gather(
            *(
                ingest.client.post(
                    "/v1/events",
                    json={"events": [order_line(f"{c}-{sku}", category=c, sku=sku)]},
                    headers=headers,
                )
                for c, headers in (("Lamps", lamps), ("Chairs", chairs))
            )
        )
        assert sorted(a.status_code for a in answers) == [202, 403], [a.text for a in answers]


async def test_an_event_of_too_many_fields_is_refused_unread(ingest: IngestService) -> None:
    tenant = new_tenant_id()
    wide = order_line("w1")
    wide["payload"] = {**wide["payload"], **{f"extra_{n}": n for n in range(101)}}
    money = order_line("w2")
    money["payload"]["unit_price"] = {"amount": "1.00", "currency": "USD"} | {
        f"x{n}": n for n in range(101)
    }
    envelope = {**order_line("w3"), **{f"top_{n}": n for n in range(101)}}
    source = order_line("w4")
    source["source"] = {**source["source"], **{f"s{n}": n for n in range(101)}}
    refused = await ingest.push(tenant, [order_line("ok"), wide, money, envelope, source])
    assert refused.status_code == 422
    assert refused.json()["errors"] == [
        {"index": 1, "field": "payload", "reason": "at most 100 fields"},
        {"index": 2, "field": "payload.unit_price", "reason": "at most 100 fields"},
        {"index": 3, "field": "event", "reason": "at most 100 fields"},
        {"index": 4, "field": "source", "reason": "at most 100 fields"},
    ]
    # Fields beside events are each named, the detail naming twenty.
    beside = await ingest.client.post(
        "/v1/events",
        json={"events": [order_line("b1")], **{f"x{n:03d}": 1 for n in range(30)}},
        headers=ingest.headers(tenant),
    )
    assert beside.status_code == 422 and len(beside.json()["errors"]) == 30
    assert beside.json()["detail"].endswith("x019 and 10 more")
    assert await ingest.outbox_rows(tenant) == 0


async def test_a_refusal_lists_its_first_ten_thousand_errors(ingest: IngestService) -> None:
    tenant = new_tenant_id()
    bad = []
    for n in range(5000):
        event = order_line(f"b{n}")
        event["payload"] = {**event["payload"], "quantity": 0, "sku": "", "status": "lost"}
        bad.append(event)
    refused = await ingest.push(tenant, bad)
    assert refused.status_code == 422
    body = refused.json()
    assert len(body["errors"]) == 10_000
    assert body["detail"] == (
        "5000 invalid event(s); nothing was stored (the first 10,000 of 15,000 errors are listed)"
    )


async def test_a_big_batch_is_read_while_other_pushes_are_answered(
    ingest: IngestService, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 5,000-event batch takes half a second of CPU to read: done beside the event
    loop, another tenant's push of one event does not wait behind it."""
    entered, release = threading.Event(), threading.Event()
    released: list[bool] = []
    validate = service.validate

    def held(raw_events: list[Any], rows: Any = None) -> Any:
        if len(raw_events) > 1:
            entered.set()
            # Let go only once the small push is answered: on the event loop it
            # could not be, and this would wait in vain.
            released.append(release.wait(10))
        return validate(raw_events, rows)

    monkeypatch.setattr(service, "validate", held)
    big = asyncio.create_task(
        ingest.push(new_tenant_id(), [order_line(f"big-{n}") for n in range(2000)])
    )
    assert await asyncio.to_thread(entered.wait, 10)
    small = await ingest.push(new_tenant_id(), [order_line("small")])
    assert small.status_code == 202
    assert not big.done()
    release.set()
    assert (await big).json() == {"accepted": 2000, "duplicates": 0}
    assert released == [True]


async def test_a_caller_limited_to_marketplaces_counts_no_warehouse_another_one_counted(
    ingest: IngestService,
) -> None:
    """A warehouse's stock on a date is its latest snapshot, whatever marketplace it was
    sent under: a user limited to MX replaced the seller's US count with its own, and the
    store's stock went from 350 to nothing for everyone."""
    tenant = new_tenant_id()

    def snapshot(event_id: str, marketplace: str, **payload: Any) -> dict[str, Any]:
        return {
            **order_line(event_id), "type": "inventory_snapshot",
            "source": {"platform": "amazon", "store_id": "acme-us", "marketplace": marketplace},
            "occurred_at": "2026-03-01T23:00:00Z",
            "payload": {"date": "2026-03-01", "sku": "LAMP-01", "warehouse": "W1",
                        "on_hand": 0, **payload},
        }  # fmt: skip

    assert (await ingest.push(tenant, [snapshot("us-w1", "US", on_hand=350)])).status_code == 202
    token = ingest.minter.mint(tenant, ["ingest:write"], limits={"marketplaces": ["MX"]})
    bearer = {"Authorization": f"Bearer {token}"}
    refused = await ingest.client.post(
        "/v1/events", json={"events": [snapshot("mx-w1", "MX")]}, headers=bearer
    )
    assert refused.status_code == 403, refused.text
    assert refused.json()["errors"] == [
        {"index": 0, "field": "payload.warehouse",
         "reason": "warehouse W1 of store acme-us was counted for SKU LAMP-01 on 2026-03-01 "
                   "outside what this caller may reach"}
    ]  # fmt: skip
    # Another warehouse, another date, or a count of its own it may push, and push again.
    for event in (
        snapshot("mx-w2", "MX", warehouse="W2"),
        snapshot("mx-d2", "MX", date="2026-03-02"),
        snapshot("mx-d2", "MX", date="2026-03-02", on_hand=5) | {"version": 2},
    ):
        answer = await ingest.client.post("/v1/events", json={"events": [event]}, headers=bearer)
        assert answer.status_code == 202, answer.text
    assert await ingest.outbox_rows(tenant) == 4
