"""``/v1/grants`` at the gateway: who may issue, change and revoke, and what a grant reads.

How an agency then reaches the seller's data, in every service, is in
``tests/e2e/test_grants.py``.
"""

from __future__ import annotations

from datetime import UTC, datetime

import httpx

from shared.access import EFFECTIVE_GRANT_PATH
from tests.conftest import NewTenant, TenantClient, fetch_token
from tests.gateway.login import add_user
from tests.gateway.test_admin_reach import signed_in


async def grant_of_store_s1(
    http: httpx.AsyncClient, seller: TenantClient, agency: TenantClient
) -> str:
    """The id of a grant of the seller's store s1 to the agency, for reading KPIs."""
    given = await http.post(
        "/v1/grants",
        json={"agency_tenant_id": agency.tenant_id, "stores": ["s1"], "scopes": ["kpi:read"]},
        headers=seller.headers,
    )
    assert given.status_code == 201, given.text
    return str(given.json()["id"])


async def test_grants_refuse_a_tenant_id_the_caller_may_not_act_for(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    seller = await new_tenant()
    # The agency's client holds tenant:admin of the agency itself.
    agency = await new_tenant()
    await grant_of_store_s1(http, seller, agency)
    own = await http.post(
        "/v1/grants",
        json={"agency_tenant_id": seller.tenant_id, "stores": ["a1"], "scopes": ["kpi:read"]},
        headers=agency.headers,
    )
    assert own.status_code == 201
    stranger = await new_tenant()
    as_seller = {"tenant_id": seller.tenant_id}
    as_stranger = {"tenant_id": stranger.tenant_id}
    grant_body = {"agency_tenant_id": stranger.tenant_id, "stores": ["zz"], "scopes": ["kpi:read"]}
    for params in (as_seller, as_stranger):
        # Never silently issued, changed or revoked as the agency's own instead.
        for refused in (
            await http.post("/v1/grants", params=params, json=grant_body, headers=agency.headers),
            await http.patch(
                f"/v1/grants/{own.json()['id']}",
                params=params,
                json={"stores": ["zz"]},
                headers=agency.headers,
            ),
            await http.delete(
                f"/v1/grants/{own.json()['id']}", params=params, headers=agency.headers
            ),
        ):
            assert refused.status_code == 403, (params, refused.text)
    listed = (await http.get("/v1/grants", headers=agency.headers)).json()["grants"]
    issued = [g for g in listed if g["tenant_id"] == agency.tenant_id]
    assert [(g["id"], g["stores"], g["status"]) for g in issued] == [
        (own.json()["id"], ["a1"], "active")
    ]
    # Naming its own tenant is the same as naming none.
    changed = await http.patch(
        f"/v1/grants/{own.json()['id']}",
        params={"tenant_id": agency.tenant_id},
        json={"stores": ["a2"]},
        headers=agency.headers,
    )
    assert changed.status_code == 200 and changed.json()["stores"] == ["a2"]


async def test_expires_at_is_an_rfc3339_timestamp_with_its_offset(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    seller = await new_tenant()
    agency = await new_tenant(scopes=["kpi:read"])
    good = {"agency_tenant_id": agency.tenant_id, "stores": ["s1"], "scopes": ["kpi:read"]}
    not_timestamps: list[object] = [1900000000, 1900000000.5, "2030-01-01", "2030-01-01T00:00:00"]
    for expires_at in not_timestamps:
        response = await http.post(
            "/v1/grants", json={**good, "expires_at": expires_at}, headers=seller.headers
        )
        assert response.status_code == 422, (expires_at, response.text)
        assert [e["field"] for e in response.json()["errors"]] == ["expires_at"]
    created = await http.post(
        "/v1/grants",
        json={**good, "expires_at": "2030-01-01T00:00:00+02:00"},
        headers=seller.headers,
    )
    assert created.status_code == 201, created.text
    expiry = datetime(2029, 12, 31, 22, tzinfo=UTC)
    assert datetime.fromisoformat(created.json()["expires_at"]) == expiry
    grant = f"/v1/grants/{created.json()['id']}"
    for expires_at in not_timestamps:
        response = await http.patch(grant, json={"expires_at": expires_at}, headers=seller.headers)
        assert response.status_code == 422, (expires_at, response.text)
        assert [e["field"] for e in response.json()["errors"]] == ["expires_at"]
    kept = await http.get(grant, headers=seller.headers)
    assert datetime.fromisoformat(kept.json()["expires_at"]) == expiry
    # Said in UTC, as every later read says it: a client comparing text sees no change.
    assert created.json()["expires_at"] == kept.json()["expires_at"]
    moved = await http.patch(
        grant, json={"expires_at": "2031-01-01T09:00:00+09:00"}, headers=seller.headers
    )
    again = await http.get(grant, headers=seller.headers)
    assert moved.json()["expires_at"] == again.json()["expires_at"]
    assert datetime.fromisoformat(moved.json()["expires_at"]) == datetime(2031, 1, 1, tzinfo=UTC)


async def test_a_grant_gives_no_scope_its_issuer_lacks(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    """As a client never holds a scope its creator lacks: a seller admin that may not
    plan targets cannot let an agency plan them."""
    seller = await new_tenant(scopes=["tenant:admin", "kpi:read"])
    agency = await new_tenant(scopes=["kpi:read"])
    wanted = {"agency_tenant_id": agency.tenant_id, "stores": ["s1"]}
    beyond = await http.post(
        "/v1/grants",
        json={**wanted, "scopes": ["kpi:read", "targets:write"]},
        headers=seller.headers,
    )
    assert (beyond.status_code, beyond.json()["error"]) == (403, "insufficient_scope")
    assert 'scope="targets:write"' in beyond.headers["www-authenticate"]
    created = await http.post(
        "/v1/grants", json={**wanted, "scopes": ["kpi:read"]}, headers=seller.headers
    )
    assert created.status_code == 201, created.text
    grant = f"/v1/grants/{created.json()['id']}"
    widened = await http.patch(grant, json={"scopes": ["ingest:write"]}, headers=seller.headers)
    assert (widened.status_code, widened.json()["error"]) == (403, "insufficient_scope")
    assert (await http.get(grant, headers=seller.headers)).json()["scopes"] == ["kpi:read"]


async def test_more_stores_or_a_longer_life_need_the_grants_scopes_too(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    """Widening a grant hands its scopes out anew: an admin lacking one of them may
    narrow or revoke it, not widen or revive it."""
    seller = await new_tenant()
    agency = await new_tenant(scopes=["kpi:read"])
    later = datetime(2199, 1, 1, tzinfo=UTC).isoformat()
    created = await http.post(
        "/v1/grants",
        json={"agency_tenant_id": agency.tenant_id, "stores": ["s1", "s2"],
              "scopes": ["ingest:write"], "expires_at": "2198-01-01T00:00:00Z"},
        headers=seller.headers,
    )  # fmt: skip
    assert created.status_code == 201, created.text
    grant = f"/v1/grants/{created.json()['id']}"
    token = await fetch_token(http, seller.client_id, seller.client_secret, "tenant:admin kpi:read")
    narrow = {"Authorization": f"Bearer {token}"}
    for widening in ({"stores": ["s1", "s2", "s3"]}, {"expires_at": None}, {"expires_at": later}):
        refused = await http.patch(grant, json=widening, headers=narrow)
        assert (refused.status_code, refused.json()["error"]) == (403, "insufficient_scope")
        assert 'scope="ingest:write"' in refused.headers["www-authenticate"], widening
    narrowed = await http.patch(
        grant, json={"stores": ["s1"], "expires_at": "2197-01-01T00:00:00Z"}, headers=narrow
    )
    assert narrowed.status_code == 200, narrowed.text
    assert (await http.get(grant, headers=seller.headers)).json()["stores"] == ["s1"]
    widened = await http.patch(grant, json={"stores": ["s1", "s3"]}, headers=seller.headers)
    assert widened.status_code == 200, widened.text


async def test_the_agency_reads_its_grant_and_is_told_only_the_seller_changes_it(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    seller = await new_tenant()
    agency = await new_tenant()
    stranger = await new_tenant()
    grant_id = await grant_of_store_s1(http, seller, agency)
    grant = f"/v1/grants/{grant_id}"
    assert (await http.get(grant, headers=agency.headers)).status_code == 200
    told = f"grant {grant_id} is changed and revoked by the seller that issued it"
    for answer in (
        await http.patch(grant, json={"stores": ["s1", "s2"]}, headers=agency.headers),
        await http.delete(grant, headers=agency.headers),
    ):
        assert (answer.status_code, answer.json()) == (403, {"error": "forbidden", "detail": told})
    # Anyone else learns nothing of it, whichever way it asks.
    for answer in (
        await http.get(grant, headers=stranger.headers),
        await http.patch(grant, json={"stores": ["s1"]}, headers=stranger.headers),
        await http.delete(grant, headers=stranger.headers),
    ):
        assert answer.status_code == 404
    assert (await http.get(grant, headers=seller.headers)).json()["stores"] == ["s1"]


async def test_a_person_limited_to_some_stores_learns_no_other_granted_store(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    """The services' lookup of a grant is served on the public gateway too: it shows a
    person of the agency limited to some stores only those, as ``/v1/grants`` does."""
    seller = await new_tenant()
    agency = await new_tenant()
    given = await http.post(
        "/v1/grants",
        json={"agency_tenant_id": agency.tenant_id, "stores": ["s1", "s2"], "scopes": ["kpi:read"]},
        headers=seller.headers,
    )
    assert given.status_code == 201, given.text
    _, limited = await signed_in(http, agency, "viewer", "kpi:read", limits={"stores": ["s1"]})
    lookup = f"{EFFECTIVE_GRANT_PATH}?tenant_id={seller.tenant_id}"
    for caller, stores in ((agency, ["s1", "s2"]), (limited, ["s1"])):
        answer = await http.get(lookup, headers=caller.headers)
        assert answer.status_code == 200, answer.text
        assert answer.json()["stores"] == stores
        listed = await http.get("/v1/grants", headers=caller.headers)
        assert [grant["stores"] for grant in listed.json()["grants"]] == [stores]


async def test_any_store_or_category_an_event_may_name_can_be_granted_or_a_limit(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    """Identifiers are at most 256 characters in events; grants and user limits took
    200, so a store pushed with a longer id could be shared with no one."""
    seller = await new_tenant()
    agency = await new_tenant(scopes=["kpi:read"])
    longest, too_long = "S" * 256, "S" * 257
    granted = await http.post(
        "/v1/grants",
        json={"agency_tenant_id": agency.tenant_id, "stores": [longest], "scopes": ["kpi:read"]},
        headers=seller.headers,
    )
    assert granted.status_code == 201, granted.text
    limited = await add_user(
        http, seller, "viewer", limits={"stores": [longest], "categories": ["C" * 256]}
    )
    assert limited["limits"]["stores"] == [longest]
    refused = await http.patch(
        f"/v1/grants/{granted.json()['id']}", json={"stores": [too_long]}, headers=seller.headers
    )
    assert refused.status_code == 422
    assert [e["field"] for e in refused.json()["errors"]] == ["stores.0"]


async def test_a_refusal_through_a_grant_says_whether_a_grant_could_give_the_scope(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    seller = await new_tenant()
    agency = await new_tenant()  # its token holds every tenant scope
    await grant_of_store_s1(http, seller, agency)
    reads_for = {"tenant_id": seller.tenant_id}
    plans = await http.get("/v1/targets/plans", params=reads_for, headers=agency.headers)
    settings = await http.get("/v1/settings/kpi", params=reads_for, headers=agency.headers)
    withheld = f"the grant of tenant {seller.tenant_id} does not give"
    assert (plans.status_code, plans.json()["detail"]) == (
        403,
        f"{withheld} targets:read; its seller may add it",
    )
    assert (settings.status_code, settings.json()["detail"]) == (
        403,
        f"{withheld} tenant:admin; no grant gives it: it acts in the caller's own tenant only",
    )
