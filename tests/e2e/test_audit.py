"""The audit trail: writes in every service, token issues and sign-ins, grant changes,
read back through the gateway by the tenant's admins only."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import httpx

from shared.events import OFFSET_REASON
from tests.conftest import NewTenant, Stack, TenantClient, fetch_token
from tests.e2e.test_export_erasure import erased_by_itself
from tests.e2e.test_grants import sale
from tests.gateway.login import (
    add_user,
    authorize_params,
    code_form,
    exchange,
    frontend_client,
    pkce,
    sign_in,
)

Entries = list[dict[str, Any]]


async def audit_entries(
    http: httpx.AsyncClient, who: TenantClient, want: int | Callable[[Entries], bool], **params: Any
) -> Entries:
    """The tenant's entries once at least ``want`` are there, or once ``want`` says they
    are all there (each is recorded after its answer went out)."""
    complete = want if callable(want) else lambda entries: len(entries) >= want
    deadline = time.monotonic() + 10
    while True:
        response = await http.get("/v1/audit", params=params, headers=who.headers)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["warnings"] == []
        entries: Entries = body["entries"]
        if complete(entries) or time.monotonic() > deadline:
            return entries
        await asyncio.sleep(0.1)


def actions(entries: Entries) -> set[tuple[str, str, int]]:
    return {(e["service"], e["action"], e["status"]) for e in entries}


async def test_writes_sign_ins_and_grants_are_recorded_per_tenant(
    http: httpx.AsyncClient, stack: Stack, new_tenant: NewTenant
) -> None:
    seller = await new_tenant()
    agency = await new_tenant(scopes=["kpi:read"])
    await fetch_token(http, seller.client_id, seller.client_secret, scope="kpi:read")
    pushed = await http.post(
        "/v1/events",
        json={"events": [{"event_id": "x"}]},
        # The address a caller claims is not taken for its own.
        headers={**seller.headers, "User-Agent": "acme-erp/2.1", "X-Forwarded-For": "203.0.113.9"},
    )
    assert pushed.status_code == 422
    settings = await http.put(
        f"{stack.url('metrics')}/v1/settings/kpi",
        json={"gmv_includes_tax": True},
        headers=seller.headers,
    )
    assert settings.status_code == 200, settings.text
    zone = await http.put(
        # The store "店/1%": its "/" and "%" stay encoded in the entry's target.
        "/v1/settings/stores/%E5%BA%97%2F1%25",
        json={"timezone": "Asia/Tokyo"},
        headers=seller.headers,
    )
    assert zone.status_code == 200, zone.text
    grant = await http.post(
        "/v1/grants",
        json={"agency_tenant_id": agency.tenant_id, "stores": ["s1"], "scopes": ["kpi:read"]},
        headers=seller.headers,
    )
    assert grant.status_code == 201
    revoked = await http.delete(f"/v1/grants/{grant.json()['id']}", headers=seller.headers)
    assert revoked.status_code == 204
    # Ending a token is a write of the tenant's too.
    spare = await fetch_token(http, seller.client_id, seller.client_secret, scope="kpi:read")
    ended = await http.post(
        "/oauth/revoke", data={"token": spare}, auth=(seller.client_id, seller.client_secret)
    )
    assert ended.status_code == 200
    # Someone guessing at the client's secret shows in its tenant's trail, as nobody.
    guessed = await http.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(seller.client_id, "not-the-secret"),
    )
    assert guessed.status_code == 401
    # So does a request refused before its secret is looked at: two ways of
    # authenticating at once, or a field given twice, still name the client.
    doubled = await http.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "client_secret": "not-the-secret"},
        auth=(seller.client_id, "not-the-secret"),
    )
    assert doubled.status_code == 400, doubled.text
    repeated = await http.post(
        "/oauth/token",
        content=f"grant_type=client_credentials&client_id={seller.client_id}&scope=a&scope=b",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert repeated.status_code == 400, repeated.text

    expected = {
        ("gateway", "POST /oauth/token", 401),
        ("gateway", "POST /oauth/token", 400),
        ("ingest", "POST /v1/events", 422),
        ("metrics", "PUT /v1/settings/kpi", 200),
        # As the API document names the route, not the router's `{store_id:anything}`.
        ("metrics", "PUT /v1/settings/stores/{store_id}", 200),
        ("gateway", "POST /v1/grants", 201),
        ("gateway", "DELETE /v1/grants/{grant_id}", 204),
        ("gateway", "POST /oauth/token", 200),
        ("gateway", "POST /oauth/revoke", 200),
        # What the platform admin did to the tenant is in the tenant's own trail.
        ("gateway", "POST /v1/tenants", 201),
        ("gateway", "POST /v1/tenants/{tenant_id}/clients", 201),
    }

    # Tokens are issued twice here, so a count of entries can be met before the last write.
    def token_refusals(found: Entries) -> Entries:
        return [e for e in found if e["action"] == "POST /oauth/token" and e["status"] == 400]

    entries = await audit_entries(
        http,
        seller,
        lambda found: expected <= actions(found) and len(token_refusals(found)) == 2,
    )
    assert expected <= actions(entries)
    # Newest first, each with who, for which tenant, and from where.
    assert [e["at"] for e in entries] == sorted((e["at"] for e in entries), reverse=True)
    push = next(e for e in entries if e["action"] == "POST /v1/events")
    assert push["tenant_id"] == seller.tenant_id and push["client_id"] == seller.client_id
    assert push["ip"] == "127.0.0.1" and push["user_agent"] == "acme-erp/2.1"
    assert push["trace_id"]
    guess = next(e for e in entries if e["action"] == "POST /oauth/token" and e["status"] == 401)
    assert (guess["actor"], guess["client_id"]) == (None, None)
    assert guess["detail"] == {"claimed_client_id": seller.client_id}
    unread = token_refusals(entries)
    assert len(unread) == 2
    assert all((e["actor"], e["client_id"]) == (None, None) for e in unread)
    assert all(e["detail"] == {"claimed_client_id": seller.client_id} for e in unread)
    zoned = next(e for e in entries if e["action"].startswith("PUT /v1/settings/stores/"))
    assert zoned["target"] == "/v1/settings/stores/店%2F1%25"
    # The gateway forwarded the push: one entry, by ingest, not two.
    assert sum(1 for e in entries if e["target"] == "/v1/events") == 1

    # Another tenant sees none of it; a reader cannot read the trail at all.
    stranger = await new_tenant()
    theirs = await audit_entries(http, stranger, 1)
    assert theirs and {e["tenant_id"] for e in theirs} == {stranger.tenant_id}
    reader = await fetch_token(http, seller.client_id, seller.client_secret, scope="kpi:read")
    denied = await http.get("/v1/audit", headers={"Authorization": f"Bearer {reader}"})
    assert denied.status_code == 403 and denied.json()["error"] == "insufficient_scope"
    since_now = await http.get(
        "/v1/audit", params={"since": "2999-01-01T00:00:00Z"}, headers=seller.headers
    )
    assert since_now.json()["entries"] == []
    too_many = await http.get("/v1/audit", params={"limit": 5000}, headers=seller.headers)
    assert too_many.status_code == 422 and too_many.json()["errors"][0]["field"] == "limit"
    # An instant beyond the calendar once in UTC is named, not a fault of the server.
    for name, beyond in (
        ("since", "0001-01-01T00:00:00+14:00"),
        ("until", "9999-12-31T23:59:59-12:00"),
        # Nor are digits seconds since 1970: a compact date would silently ask for 1970.
        ("since", "20261201"),
        # Nor an instant without an offset (in which zone?), or with one no zone has.
        ("since", "2026-03-01T00:00:00"),
        ("until", "2026-03-01T00:00:00+15:00"),
    ):
        refused = await http.get("/v1/audit", params={name: beyond}, headers=seller.headers)
        assert refused.status_code == 422, refused.text
        assert refused.json()["errors"][0]["field"] == name
    assert refused.json()["errors"][0]["reason"] == OFFSET_REASON
    earliest = await http.get(
        "/v1/audit", params={"since": "0001-01-01T12:00:00+12:00"}, headers=seller.headers
    )
    assert earliest.status_code == 200, earliest.text


async def agency_pushing(
    http: httpx.AsyncClient,
    seller: TenantClient,
    agency: TenantClient,
    *pushes: tuple[str, str, int],
) -> None:
    """The seller grants the agency ``ingest:write`` in store s1; the agency pushes a
    sale (event id, store) for each of ``pushes``, answered with its status."""
    granted = await http.post(
        "/v1/grants",
        json={"agency_tenant_id": agency.tenant_id, "stores": ["s1"], "scopes": ["ingest:write"]},
        headers=seller.headers,
    )
    assert granted.status_code == 201, granted.text
    for event_id, store, expected in pushes:
        pushed = await http.post(
            "/v1/events",
            params={"tenant_id": seller.tenant_id},
            json={"events": [sale(event_id, store, "10.00")]},
            headers=agency.headers,
        )
        assert pushed.status_code == expected, pushed.text


async def test_a_caller_that_names_no_user_agent_is_recorded_with_none(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    """The gateway forwarded such a push with httpx's own User-Agent, which ingest's
    trail then showed as the caller's."""
    seller = await new_tenant()
    push = http.build_request(
        "POST", "/v1/events", json={"events": [{"event_id": "x"}]}, headers=seller.headers
    )
    del push.headers["user-agent"]
    assert (await http.send(push)).status_code == 422
    entries = await audit_entries(http, seller, lambda found: bool(pushes(found)))
    assert [e["user_agent"] for e in pushes(entries)] == [None]


def pushes(entries: Entries) -> Entries:
    return [e for e in entries if e["action"] == "POST /v1/events"]


async def test_an_agency_s_trail_lists_what_its_people_did_in_its_sellers_data(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    """The agency answers for its people's writes under a grant: its own trail lists
    them, as the seller's does, until the seller is erased."""
    seller, agency = await new_tenant(), await new_tenant()
    await agency_pushing(http, seller, agency, ("agency-s1", "s1", 202), ("agency-s2", "s2", 403))

    def in_seller_data(entries: Entries) -> list[tuple[str, str, int]]:
        return sorted(
            (e["tenant_id"], e["detail"]["acting_tenant"], e["status"])
            for e in entries
            if e["action"] == "POST /v1/events"
        )

    both_pushes = [
        (seller.tenant_id, agency.tenant_id, 202),
        (seller.tenant_id, agency.tenant_id, 403),
    ]
    ours = await audit_entries(http, agency, lambda e: len(in_seller_data(e)) == 2)
    assert in_seller_data(ours) == both_pushes
    assert {e["client_id"] for e in ours if e["action"] == "POST /v1/events"} == {agency.client_id}
    theirs = await audit_entries(http, seller, lambda e: len(in_seller_data(e)) == 2)
    assert in_seller_data(theirs) == both_pushes
    # Its other entries are of its own tenant.
    assert all(e["tenant_id"] == agency.tenant_id for e in ours if e["action"] != "POST /v1/events")
    # A window and a limit apply to both halves of the agency's trail.
    newest = await audit_entries(http, agency, 1, limit=1)
    assert len(newest) == 1 and newest[0]["at"] == ours[0]["at"]
    later = await audit_entries(http, agency, 0, since="2999-01-01T00:00:00Z")
    assert later == []

    await erased_by_itself(http, seller)
    after = await audit_entries(http, agency, lambda e: not in_seller_data(e))
    assert in_seller_data(after) == [] and seller.tenant_id not in str(after)


async def test_an_erased_agency_is_no_longer_named_in_its_sellers_trail(
    http: httpx.AsyncClient, new_tenant: NewTenant, pg: Any
) -> None:
    """What the agency did stays in the seller's trail; who did it goes with the agency,
    with the idempotency keys its client claimed in the seller's data."""
    seller, agency = await new_tenant(), await new_tenant()
    await agency_pushing(http, seller, agency, ("agency-push-1", "s1", 202))
    keyed = await http.post(
        "/v1/events",
        params={"tenant_id": seller.tenant_id},
        json={"events": [sale("agency-push-2", "s1", "10.00")]},
        headers={**agency.headers, "Idempotency-Key": "agency-key"},
    )
    assert keyed.status_code == 202, keyed.text
    agency_keys = (
        "SELECT count(*) FROM ingest.idempotency_keys WHERE tenant_id = $1 AND caller LIKE $2"
    )
    assert await pg.fetchval(agency_keys, seller.tenant_id, f"{agency.client_id} %") == 1
    # A refused write of the seller's naming the agency keeps its id in the detail.
    asked = await http.put(
        "/v1/settings/kpi", params={"tenant_id": agency.tenant_id}, json={}, headers=seller.headers
    )
    assert asked.status_code == 403, asked.text

    def agency_push(entries: Entries) -> list[dict[str, Any]]:
        return [e for e in entries if e["action"] == "POST /v1/events" and e["status"] == 202]

    # The seller's own refused attempt on the agency's tenant names it in its target.
    confirm = {"confirm": agency.tenant_id}
    tried = await http.request(
        "DELETE", f"/v1/tenants/{agency.tenant_id}", json=confirm, headers=seller.headers
    )
    assert tried.status_code == 403, tried.text

    def attempt(entries: Entries) -> list[dict[str, Any]]:
        return [e for e in entries if e["action"].startswith("DELETE /v1/tenants/")]

    before = agency_push(await audit_entries(http, seller, lambda e: bool(attempt(e))))
    assert [e["client_id"] for e in before] == [agency.client_id] * 2
    assert [e["detail"]["acting_tenant"] for e in before] == [agency.tenant_id] * 2
    await erased_by_itself(http, agency)
    trail = await audit_entries(http, seller, 1)
    after = agency_push(trail)
    assert [(e["actor"], e["client_id"]) for e in after] == [(None, None)] * 2
    assert [e["detail"] for e in after] == [{**e["detail"], "acting_tenant": None} for e in before]
    assert agency.tenant_id not in str(trail) and agency.client_id not in str(trail)
    assert [e["target"] for e in attempt(trail)] == ["/v1/tenants/(erased tenant)"]
    assert {"asked_tenant": "(erased tenant)"} in [e["detail"] for e in trail]
    assert await pg.fetchval(agency_keys, seller.tenant_id, f"{agency.client_id} %") == 0


async def test_a_refused_erasure_is_in_the_trail_and_a_done_one_names_no_one(
    http: httpx.AsyncClient, new_tenant: NewTenant, stack: Stack
) -> None:
    """An attempt to erase the whole tenant is worth a line like any refused write; an
    erasure done leaves its erasures row alone to keep the tenant's id."""
    seller = await new_tenant()
    refused = await http.request(
        "DELETE",
        f"/v1/tenants/{seller.tenant_id}",
        json={"confirm": "nope"},
        headers=seller.headers,
    )
    assert refused.status_code == 422
    attempt = ("gateway", "DELETE /v1/tenants/{tenant_id}", 422)
    entries = await audit_entries(http, seller, lambda e: attempt in actions(e))
    assert attempt in actions(entries)
    gone = await new_tenant()
    await erased_by_itself(http, gone)
    async with stack.apps["gateway"].state.db.raw_connection() as conn:
        named = await conn.fetchval(
            "SELECT count(*) FROM audit_log WHERE tenant_id = $1 OR target LIKE '%' || $1 || '%'",
            gone.tenant_id,
        )
    assert named == 0


async def test_a_replayed_code_and_a_reused_refresh_token_are_in_the_tenants_trail(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    """Each ends a sign-in, the one sign a seller has of a stolen token: its trail says so."""
    seller = await new_tenant()
    client_id = await frontend_client(http, seller)
    viewer = await add_user(http, seller, "viewer")
    query, verifier = await sign_in(http, client_id, viewer["email"])
    form = code_form(query, verifier)
    issued = await exchange(http, client_id, **form)
    assert issued.status_code == 200, issued.text
    assert (await exchange(http, client_id, **form)).status_code == 400
    refresh = {"grant_type": "refresh_token", "refresh_token": issued.json()["refresh_token"]}
    assert (await exchange(http, client_id, **refresh)).status_code == 400

    def refusals(entries: Entries) -> list[dict[str, Any]]:
        return [e for e in entries if e["action"] == "POST /oauth/token" and e["status"] == 400]

    entries = await audit_entries(http, seller, lambda found: len(refusals(found)) >= 2)
    assert sorted(e["detail"]["refused"] for e in refusals(entries)) == [
        "authorization code already used",
        "refresh token already used or revoked",
    ]
    assert {e["client_id"] for e in refusals(entries)} == {client_id}
    # So is a sign-in tried at its portal with an address nobody has.
    _, challenge = pkce()
    unknown = {"email": "nobody@example.com", "password": "not a password"}
    page = {**authorize_params(client_id, challenge), **unknown}
    assert (await http.post("/oauth/authorize", data=page)).status_code == 401

    def failed(entries: Entries) -> list[dict[str, Any]]:
        return [e for e in entries if e["action"] == "POST /oauth/authorize" and e["status"] == 401]

    [attempt] = failed(await audit_entries(http, seller, lambda found: bool(failed(found))))
    assert (attempt["actor"], attempt["client_id"]) == (None, client_id)
    assert attempt["detail"] == {"outcome": "sign_in_failed"}


async def test_an_agency_refused_for_want_of_a_grant_is_in_the_trails_that_concern_it(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    """A write the grant does not allow is in the seller's trail (and the agency's); one
    naming a tenant that granted nothing is in the agency's, naming the tenant asked."""
    seller, agency, stranger = await new_tenant(), await new_tenant(), await new_tenant()
    granted = await http.post(
        "/v1/grants",
        json={"agency_tenant_id": agency.tenant_id, "stores": ["s1"], "scopes": ["kpi:read"]},
        headers=seller.headers,
    )
    assert granted.status_code == 201, granted.text
    for tenant in (seller, stranger):
        pushed = await http.post(
            "/v1/events",
            params={"tenant_id": tenant.tenant_id},
            json={"events": [sale("refused", "s1", "10.00")]},
            headers=agency.headers,
        )
        assert pushed.status_code == 403, pushed.text

    def pushes(entries: Entries) -> list[tuple[str, dict[str, Any]]]:
        return [(e["tenant_id"], e["detail"]) for e in entries if e["action"] == "POST /v1/events"]

    acting = {"grant_id": granted.json()["id"], "acting_tenant": agency.tenant_id}
    theirs = await audit_entries(http, seller, lambda found: bool(pushes(found)))
    assert pushes(theirs) == [(seller.tenant_id, acting)]
    ours = await audit_entries(http, agency, lambda found: len(pushes(found)) == 2)
    assert sorted(pushes(ours), key=str) == sorted(
        [(seller.tenant_id, acting), (agency.tenant_id, {"asked_tenant": stranger.tenant_id})],
        key=str,
    )


async def test_a_write_the_input_guard_refuses_is_in_the_tenants_trail(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    """Refused before any route read the token, such writes were in no trail: a probe
    with crafted bodies left none, where a body that is no JSON did."""
    tenant = await new_tenant()
    json_type = {**tenant.headers, "Content-Type": "application/json"}
    refused = [
        # A route the gateway owns, and ones it would forward: never reaching a service.
        ("POST", "/v1/users", b'{"email": "a\\u0000@b.example"}', json_type, 422),
        ("PUT", "/v1/settings/kpi", b'{"gmv_includes_tax": 1, "gmv_includes_tax": 2}',
         json_type, 422),
        ("POST", "/v1/events", b"{}", {**json_type, "Content-Encoding": "br"}, 415),
        ("PUT", "/v1/settings/kpi%00", b"{}", json_type, 422),
    ]  # fmt: skip
    for method, path, body, headers, status in refused:
        answer = await http.request(method, path, content=body, headers=headers)
        assert answer.status_code == status, (path, answer.text)
    entries = [
        e
        for e in await audit_entries(
            http, tenant, lambda got: len([e for e in got if e["status"] >= 400]) >= len(refused)
        )
        if e["status"] >= 400
    ]
    assert {(e["action"], e["status"]) for e in entries} == {
        ("POST /v1/users", 422),
        ("PUT /v1/settings/kpi", 422),
        ("POST /v1/events", 415),
        ("PUT /v1/settings/kpi\\x00", 422),
    }
    assert {e["client_id"] for e in entries} == {tenant.client_id}
