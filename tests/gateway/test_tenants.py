"""Tenants and clients: who may create what, and what bad input gets."""

from __future__ import annotations

import httpx

from services.gateway.tenants.internal import TENANT_PROFILE_PATH
from tests.conftest import NewTenant, fetch_token


async def test_tenant_validation_names_the_field(http: httpx.AsyncClient, admin_token: str) -> None:
    auth = {"Authorization": f"Bearer {admin_token}"}
    for body, field in [
        ({"name": "x", "reporting_currency": "usd"}, "reporting_currency"),
        ({"name": "x", "reporting_currency": "USD", "timezone": "Mars/Base"}, "timezone"),
        # Files of the host's zoneinfo that are no IANA zone.
        ({"name": "x", "reporting_currency": "USD", "timezone": "localtime"}, "timezone"),
        ({"name": "x", "reporting_currency": "USD", "timezone": "posixrules"}, "timezone"),
        ({"name": "x", "reporting_currency": "USD", "timezone": "Factory"}, "timezone"),
        ({"name": "x", "reporting_currency": "USD", "timezone": "../zoneinfo/UTC"}, "timezone"),
        ({"reporting_currency": "USD"}, "name"),
        ({"name": "", "reporting_currency": "USD"}, "name"),
    ]:
        response = await http.post("/v1/tenants", json=body, headers=auth)
        assert response.status_code == 422, body
        assert [e["field"] for e in response.json()["errors"]] == [field]
    created = await http.post(
        "/v1/tenants",
        json={"name": "Acme MX", "reporting_currency": "MXN", "timezone": "America/Mexico_City"},
        headers=auth,
    )
    assert created.status_code == 201
    body = created.json()
    assert body["reporting_currency"] == "MXN" and body["timezone"] == "America/Mexico_City"
    fetched = await http.get(f"/v1/tenants/{body['id']}", headers=auth)
    assert fetched.json()["name"] == "Acme MX"
    # Oldest first, a page at a time: the suite's other tenants come before this one.
    listed: list[str] = []
    while body["id"] not in listed:
        page = await http.get(
            "/v1/tenants", params={"limit": 500, "offset": len(listed)}, headers=auth
        )
        assert page.json()["tenants"], "the new tenant is on no page"
        listed += [t["id"] for t in page.json()["tenants"]]
    beyond = await http.get("/v1/tenants", params={"offset": 2**63}, headers=auth)
    assert beyond.status_code == 422, beyond.text
    assert [e["field"] for e in beyond.json()["errors"]] == ["offset"]


async def test_client_scopes_are_checked(
    http: httpx.AsyncClient, admin_token: str, new_tenant: NewTenant
) -> None:
    auth = {"Authorization": f"Bearer {admin_token}"}
    tenant = await new_tenant(scopes=["tenant:admin", "kpi:read"])
    for scopes in (["platform:admin"], ["kpi:read", "make:coffee"]):
        refused = await http.post(
            f"/v1/tenants/{tenant.tenant_id}/clients",
            json={"name": "x", "scopes": scopes},
            headers=auth,
        )
        assert refused.status_code == 422
        [error] = refused.json()["errors"]
        assert error["field"] == f"scopes.{len(scopes) - 1}"
        assert error["reason"].startswith(f"{scopes[-1]} is not a tenant scope")
    # A tenant admin may create clients of its own tenant, never with more than it holds.
    own = await http.post(
        f"/v1/tenants/{tenant.tenant_id}/clients",
        json={"name": "dashboard", "scopes": ["kpi:read"]},
        headers=tenant.headers,
    )
    assert own.status_code == 201
    assert own.json()["scopes"] == ["kpi:read"]
    assert own.json()["tenant_id"] == tenant.tenant_id
    assert own.json()["name"] == "dashboard"
    assert len(own.json()["client_secret"]) >= 40
    # Shown once: kept by no cache on the way, nor the browser's (RFC 9111 §5.2.2.5).
    assert own.headers["cache-control"] == "no-store"
    # No browser reads an answer as a page or a script, nor frames one.
    assert own.headers["x-content-type-options"] == "nosniff"
    assert own.headers["x-frame-options"] == "DENY"
    token = await fetch_token(http, own.json()["client_id"], own.json()["client_secret"])
    assert token
    more = await http.post(
        f"/v1/tenants/{tenant.tenant_id}/clients",
        json={"name": "pusher", "scopes": ["ingest:write"]},
        headers=tenant.headers,
    )
    assert more.status_code == 403
    assert more.json()["error"] == "insufficient_scope"
    assert "ingest:write" in more.json()["detail"]
    unknown = await http.post(
        "/v1/tenants/tn_missing/clients", json={"name": "x", "scopes": ["kpi:read"]}, headers=auth
    )
    assert unknown.status_code == 404
    assert unknown.json()["error"] == "not_found"


async def test_one_tenant_cannot_reach_another(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    seller_a = await new_tenant()
    seller_b = await new_tenant()
    read = await http.get(f"/v1/tenants/{seller_a.tenant_id}", headers=seller_b.headers)
    assert (read.status_code, read.json()["error"]) == (403, "forbidden")
    create = await http.post(
        f"/v1/tenants/{seller_a.tenant_id}/clients",
        json={"name": "sneaky", "scopes": ["kpi:read"]},
        headers=seller_b.headers,
    )
    assert create.status_code == 403
    # A tenant that does not exist answers the same: ids cannot be probed.
    unknown = await http.get("/v1/tenants/tn_missing", headers=seller_b.headers)
    assert (unknown.status_code, unknown.json()) == (
        403,
        {"error": "forbidden", "detail": "no access to tenant tn_missing"},
    )
    own = await http.get(f"/v1/tenants/{seller_b.tenant_id}", headers=seller_b.headers)
    assert own.status_code == 200
    reader = await new_tenant(scopes=["kpi:read"])
    assert (
        await http.get(f"/v1/tenants/{reader.tenant_id}", headers=reader.headers)
    ).status_code == 403


async def test_a_tenant_profile_is_its_own_tokens_only(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    """The services ask the gateway for a tenant's currency with the caller's token."""
    seller = await new_tenant(scopes=["kpi:read"], reporting_currency="MXN")
    other = await new_tenant(scopes=["kpi:read"])
    seller_admin = await new_tenant()
    own = await http.get(
        TENANT_PROFILE_PATH.format(tenant_id=seller.tenant_id), headers=seller.headers
    )
    assert own.json() == {"reporting_currency": "MXN", "timezone": None}
    for tenant_id in (seller.tenant_id, "tn_missing"):
        refused = await http.get(
            TENANT_PROFILE_PATH.format(tenant_id=tenant_id), headers=other.headers
        )
        assert (refused.status_code, refused.json()) == (
            403,
            {"error": "forbidden", "detail": f"no access to tenant {tenant_id}"},
        )
    # Answers are given in it: only a token that may read KPIs learns it.
    writer = await new_tenant(scopes=["ingest:write"])
    unread = await http.get(
        TENANT_PROFILE_PATH.format(tenant_id=writer.tenant_id), headers=writer.headers
    )
    assert unread.status_code == 403 and unread.json()["error"] == "insufficient_scope"
    # Nor does an agency through a grant without kpi:read.
    agency = await new_tenant(scopes=["kpi:read", "ingest:write"])
    granted = await http.post(
        "/v1/grants",
        json={"agency_tenant_id": agency.tenant_id, "stores": ["s1"], "scopes": ["ingest:write"]},
        headers=seller_admin.headers,
    )
    assert granted.status_code == 201, granted.text
    through = await http.get(
        TENANT_PROFILE_PATH.format(tenant_id=seller_admin.tenant_id), headers=agency.headers
    )
    assert through.status_code == 403, through.text


async def test_tenants_and_grants_refuse_a_misspelt_parameter(
    http: httpx.AsyncClient, admin_token: str, new_tenant: NewTenant
) -> None:
    """``GET /v1/grants?tenantid=`` listed every grant, not those from one seller; a
    parameter these routes do not take is refused, after the token and its scope."""
    admin = {"Authorization": f"Bearer {admin_token}"}
    seller = await new_tenant(scopes=["tenant:admin"])
    path = f"/v1/tenants/{seller.tenant_id}"
    asked = [
        ("GET", "/v1/tenants", {"limt": "5"}, admin),
        ("POST", "/v1/tenants", {"dry_run": "1"}, admin),
        ("GET", path, {"verbose": "1"}, seller.headers),
        ("GET", f"{path}/clients", {"all": "1"}, seller.headers),
        ("POST", f"{path}/clients", {"public": "true"}, seller.headers),
        ("GET", f"{path}/erasure", {"wait": "1"}, seller.headers),
        ("GET", "/v1/grants", {"tenantid": "someone"}, seller.headers),
        ("GET", "/v1/grants/gr_unknown", {"verbose": "1"}, seller.headers),
    ]
    for method, url, params, headers in asked:
        body = {"name": "x", "scopes": ["kpi:read"]} if method == "POST" else None
        refused = await http.request(method, url, params=params, json=body, headers=headers)
        assert refused.status_code == 422, (url, refused.text)
        assert refused.json()["errors"] == [
            {"field": next(iter(params)), "reason": "unknown parameter"}
        ], url
        anonymous = await http.request(method, url, params=params, json=body)
        assert anonymous.status_code == 401, url
    # A seller's admin is not the platform admin: refused for that first.
    assert (
        await http.get("/v1/tenants", params={"limt": "5"}, headers=seller.headers)
    ).status_code == 403
    # What the routes declare is taken.
    assert (await http.get("/v1/tenants", params={"limit": "5"}, headers=admin)).status_code == 200
    listed = await http.get("/v1/grants", headers=seller.headers)
    assert listed.status_code == 200, listed.text


async def test_a_rule_between_fields_names_the_field_at_fault(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant()
    response = await http.post(
        f"/v1/tenants/{tenant.tenant_id}/clients",
        json={"name": "spa", "scopes": ["kpi:read"], "public": True},
        headers=tenant.headers,
    )
    assert response.status_code == 422
    assert response.json()["errors"] == [
        {"field": "redirect_uris", "reason": "a public client needs at least one redirect_uri"}
    ]


async def test_redirect_uris_that_read_otherwise_than_they_go_are_refused(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant()
    for uri, reason in (
        ("https://user:pw@app.example.com/cb", "must not hold a user name or password"),
        ("https://@app.example.com/cb", "must not hold a user name or password"),
        # A bare "#": the code would land in the fragment, never reaching the server.
        ("https://app.example.com/cb#", "must be an absolute URI without a fragment"),
        ("https://*.example.com/cb", "must name its host, without a wildcard"),
        ("https://app.example.com/cb/../admin", "its path must not hold . or .. segments"),
        ("https://app.example.com/cb/%2e%2E/admin", "its path must not hold . or .. segments"),
        ("https://app.example.com/c\u200bb", "must be printable ASCII, without spaces"),
        ("https://app.example.com/c b", "must be printable ASCII, without spaces"),
        # Ports no browser opens: the code would be sent nowhere.
        ("https://app.example.com:99999/cb", "its port must be a number from 1 to 65535"),
        ("http://127.0.0.1:abc/cb", "its port must be a number from 1 to 65535"),
        ("https://app.example.com:0/cb", "its port must be a number from 1 to 65535"),
        ("https://app.example.com:/cb", "its port must be a number from 1 to 65535"),
    ):
        response = await http.post(
            f"/v1/tenants/{tenant.tenant_id}/clients",
            json={"name": "spa", "scopes": ["kpi:read"], "public": True, "redirect_uris": [uri]},
            headers=tenant.headers,
        )
        assert response.status_code == 422, uri
        (error,) = response.json()["errors"]
        assert error["field"].startswith("redirect_uris") and reason in error["reason"], error
