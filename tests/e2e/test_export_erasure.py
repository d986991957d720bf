"""Ownership (issue 5): a tenant exports all its data, then erases it everywhere.

Export, erase, try to write again: no write of the erased tenant is taken, and no
schema of any service holds a row of the tenant but the erasure's own record.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import secrets
import time
import uuid
import zipfile
from collections.abc import Awaitable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import orjson

from devstack.stack import SERVICES
from services.gateway.erasures.repository import WITHDRAWN
from services.gateway.erasures.tracker import ErasureTracker
from shared.erased import RecentlyErased
from shared.tenant_data import SECRET_COLUMNS
from tests.conftest import NewTenant, Stack, TenantClient, fetch_token
from tests.e2e.test_grants import REST_MARCH, march_gmv, sale, wait_for
from tests.gateway.login import (
    PASSWORD,
    add_user,
    authorize_params,
    code_form,
    exchange,
    frontend_client,
    pkce,
    sign_in,
    user_tokens,
)

# Tables whose rows belong to a tenant by another column than tenant_id.
OTHER_KEYS = {("gateway", "tenants"): ("id",), ("gateway", "grants"): ("agency_tenant_id",)}


async def tenant_rows(conn: asyncpg.Connection, tenant_id: str) -> dict[tuple[str, str], int]:
    """Rows naming the tenant in every table of every service's schema, counted directly
    (not through the code under test): by tenant_id, and tenants.id / grants' agency."""
    keyed = await conn.fetch(
        """
        SELECT c.table_schema, c.table_name FROM information_schema.columns c
        JOIN information_schema.tables t USING (table_schema, table_name)
        WHERE c.table_schema = ANY($1::text[]) AND c.column_name = 'tenant_id'
          AND t.table_type = 'BASE TABLE'
        """,
        list(SERVICES),
    )
    keys: dict[tuple[str, str], list[str]] = {
        (r["table_schema"], r["table_name"]): ["tenant_id"] for r in keyed
    }
    for table, others in OTHER_KEYS.items():
        keys.setdefault(table, []).extend(others)
    counts: dict[tuple[str, str], int] = {}
    for (schema, name), columns in keys.items():
        where = " OR ".join(f'"{c}" = $1' for c in columns)
        counts[(schema, name)] = await conn.fetchval(
            f'SELECT count(*) FROM "{schema}"."{name}" WHERE {where}', tenant_id
        )
    return counts


async def add_plan(conn: asyncpg.Connection, tenant_id: str) -> None:
    # Targets has no write API yet: its row is put in place as its API would.
    await conn.execute(
        "INSERT INTO targets.target_plans (tenant_id, id, name, year, metric, currency, amount) "
        "VALUES ($1, $2, 'FY26', 2026, 'gmv', 'USD', 1200000.50)",
        tenant_id,
        uuid.uuid4(),
    )


async def client_of(
    http: httpx.AsyncClient, admin_token: str, tenant_id: str, scopes: list[str]
) -> TenantClient:
    created = await http.post(
        f"/v1/tenants/{tenant_id}/clients",
        json={"name": "narrow", "scopes": scopes},
        headers={"Authorization": f"Bearer {admin_token}"},
    )
    assert created.status_code == 201, created.text
    body = created.json()
    token = await fetch_token(http, body["client_id"], body["client_secret"])
    return TenantClient(tenant_id, body["client_id"], body["client_secret"], token)


async def finished_export(http: httpx.AsyncClient, who: TenantClient) -> dict[str, Any]:
    # An export has no options: a body asking for some is refused, not ignored.
    optioned = await http.post("/v1/exports", json={"tables": ["orders"]}, headers=who.headers)
    assert optioned.status_code == 422
    assert optioned.json()["errors"] == [{"field": "body", "reason": "must be empty or {}"}]
    # Nor is a body sent as text read as JSON, even an empty object.
    as_text = await http.post(
        "/v1/exports", content=b"{}", headers={**who.headers, "Content-Type": "text/plain"}
    )
    assert as_text.status_code == 415, as_text.text
    assert as_text.json()["errors"] == [
        {"field": "header.Content-Type", "reason": "must be application/json"}
    ]
    started = await http.post("/v1/exports", headers=who.headers)
    assert started.status_code == 202, started.text
    export: dict[str, Any] = started.json()
    assert export["status"] == "running" and export["download_url"] is None
    assert export["tenant_id"] == who.tenant_id
    assert export["progress"]["tables_done"] == 0
    deadline = time.monotonic() + 60
    while export["status"] == "running" and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        polled = await http.get(f"/v1/exports/{export['id']}", headers=who.headers)
        assert polled.status_code == 200, polled.text
        export = polled.json()
    assert export["status"] == "ready", export
    progress = export["progress"]
    assert progress["tables_done"] == progress["tables_total"] > 0
    assert export["download_url"] == f"/v1/exports/{export['id']}/archive"
    return export


async def download(
    http: httpx.AsyncClient, who: TenantClient, export: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, bytes]]:
    """The manifest and every file, after checking the zip's and each file's checksum."""
    response = await http.get(export["download_url"], headers=who.headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/zip"
    assert "attachment" in response.headers["content-disposition"]
    digest = hashlib.sha256(response.content)
    assert response.headers["etag"] == f'"{digest.hexdigest()}"' == f'"{export["sha256"]}"'
    assert response.headers["digest"] == "sha-256=" + base64.b64encode(digest.digest()).decode()
    assert len(response.content) == export["bytes"]
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    manifest: dict[str, Any] = orjson.loads(archive.read("manifest.json"))
    assert manifest["tenant_id"] == who.tenant_id and manifest["export_id"] == export["id"]
    files = {}
    for entry in manifest["files"]:
        content = archive.read(entry["path"])
        assert entry["path"] == f"{entry['service']}/{entry['table']}.ndjson"
        assert hashlib.sha256(content).hexdigest() == entry["sha256"], entry["path"]
        assert len(content) == entry["bytes"]
        assert len(content.splitlines()) == entry["rows"], entry["path"]
        files[entry["path"]] = content
    assert sorted(archive.namelist()) == sorted([*files, "manifest.json"])
    # A client that has the file is told so, not sent it again.
    again = await http.get(
        export["download_url"], headers={**who.headers, "If-None-Match": response.headers["etag"]}
    )
    assert (again.status_code, again.content) == (304, b"")
    return manifest, files


async def test_export_then_erase_then_nothing_comes_back(
    http: httpx.AsyncClient, stack: Stack, new_tenant: NewTenant, admin_token: str, pg: Any
) -> None:
    seller = await new_tenant()
    other = await new_tenant()
    agency = await new_tenant(scopes=["kpi:read"])
    pushed = await http.post(
        "/v1/events",
        json={"events": [sale("a", "acme-us", "10.00"), sale("b", "acme-mx", "5.00")]},
        headers=seller.headers,
    )
    assert pushed.status_code == 202, pushed.text
    # The other tenant uses the same event ids: rows must still never mix.
    assert (
        await http.post(
            "/v1/events", json={"events": [sale("a", "zz-us", "7.00")]}, headers=other.headers
        )
    ).status_code == 202
    await wait_for(http, seller, seller.tenant_id, 15.0)
    await wait_for(http, other, other.tenant_id, 7.0)
    for who in (seller, other):
        settings = await http.put(
            "/v1/settings/kpi", json={"gmv_includes_tax": True}, headers=who.headers
        )
        assert settings.status_code == 200, settings.text
        await add_plan(pg, who.tenant_id)
    grant = await http.post(
        "/v1/grants",
        json={"agency_tenant_id": agency.tenant_id, "stores": ["acme-us"], "scopes": ["kpi:read"]},
        headers=seller.headers,
    )
    assert grant.status_code == 201, grant.text
    user = await http.post(
        "/v1/users",
        json={
            "email": f"ana-{secrets.token_hex(4)}@seller.example",
            "name": "Ana",
            "password": "correct horse battery",
            "role": "analyst",
        },
        headers=seller.headers,
    )
    assert user.status_code == 201, user.text
    assert await march_gmv(http, agency, seller.tenant_id) == 10.0
    # A sign-in of the user's through a frontend: its tokens are the tenant's rows.
    frontend = await frontend_client(http, seller)
    query, verifier = await sign_in(http, frontend, user.json()["email"], "correct horse battery")
    signed_in = await exchange(http, frontend, **code_form(query, verifier))
    assert signed_in.status_code == 200, signed_in.text
    code_hash = hashlib.sha256(query["code"][0].encode()).hexdigest().encode()

    # Export: every table of every service holding the seller's rows, and nothing else.
    export = await finished_export(http, seller)
    manifest, files = await download(http, seller, export)
    rows = {(f["service"], f["table"]): f["rows"] for f in manifest["files"]}
    held = {table: n for table, n in (await tenant_rows(pg, seller.tenant_id)).items() if n}
    # Exports are erased with the tenant but never exported.
    assert held.pop(("gateway", "exports")) == 1 and ("gateway", "exports") not in rows
    assert held.pop(("gateway", "export_parts")) >= 1 and ("gateway", "export_parts") not in rows
    # The audit line of the export request is written as it is answered, so the export
    # may have read the log just before it.
    audit = ("gateway", "audit_log")
    assert held.pop(audit) - rows[audit] in (0, 1)
    assert {table: rows.get(table) for table in held} == held
    for table in [
        ("gateway", "tenants"),
        ("gateway", "oauth_clients"),
        ("gateway", "grants"),
        ("gateway", "users"),
        ("ingest", "outbox"),
        ("metrics", "order_lines"),
        ("metrics", "kpi_settings"),
        ("targets", "target_plans"),
    ]:
        assert rows.get(table, 0) > 0, table
    assert {service for service, _ in rows} == set(SERVICES)
    assert rows.get(("gateway", "refresh_tokens"), 0) > 0
    for path, content in files.items():
        assert other.tenant_id.encode() not in content, path
        # Nor the hash of a credential under another name (a family of tokens was
        # named by its code's hash).
        assert code_hash not in content, path
        for line in content.splitlines():
            row = orjson.loads(line)
            assert not SECRET_COLUMNS & set(row), path
            assert "archive" not in row
    (plan,) = [orjson.loads(line) for line in files["targets/target_plans.ndjson"].splitlines()]
    assert plan["amount"] == "1200000.50" and plan["tenant_id"] == seller.tenant_id
    listed = await http.get("/v1/exports", headers=seller.headers)
    assert [e["id"] for e in listed.json()["exports"]] == [export["id"]]

    # Nobody else reads it: another tenant, a reader of the seller, an agency.
    for url in (f"/v1/exports/{export['id']}", export["download_url"]):
        assert (await http.get(url, headers=other.headers)).status_code == 404
    reader = await client_of(http, admin_token, seller.tenant_id, ["kpi:read"])
    for method, url in (
        ("POST", "/v1/exports"),
        ("GET", "/v1/exports"),
        ("GET", f"/v1/exports/{export['id']}"),
        ("GET", export["download_url"]),
    ):
        answer = await http.request(method, url, headers=reader.headers)
        assert answer.status_code == 403 and answer.json()["error"] == "insufficient_scope"
    as_agency = await http.post(
        "/v1/exports", params={"tenant_id": seller.tenant_id}, headers=agency.headers
    )
    assert as_agency.status_code == 403
    assert (await http.get(f"/v1/exports/{export['id']}")).status_code == 401

    # Erase: the confirmation must repeat the tenant id; nobody else may ask.
    for body in ({"confirm": other.tenant_id}, {}, None, {"confirm": 5}):
        refused = await http.request(
            "DELETE", f"/v1/tenants/{seller.tenant_id}", json=body, headers=seller.headers
        )
        assert refused.status_code == 422, refused.text
        assert [e["field"] for e in refused.json()["errors"]] == ["confirm"]
    confirm = {"confirm": seller.tenant_id}
    stranger = await http.request(
        "DELETE", f"/v1/tenants/{seller.tenant_id}", json=confirm, headers=other.headers
    )
    assert stranger.status_code == 403
    narrow = await http.request(
        "DELETE", f"/v1/tenants/{seller.tenant_id}", json=confirm, headers=reader.headers
    )
    assert narrow.status_code == 403 and narrow.json()["error"] == "insufficient_scope"
    assert (
        await http.get(f"/v1/tenants/{seller.tenant_id}/erasure", headers=seller.headers)
    ).status_code == 404

    erased = await http.request(
        "DELETE", f"/v1/tenants/{seller.tenant_id}", json=confirm, headers=seller.headers
    )
    assert erased.status_code == 202, erased.text
    erasure = erased.json()
    assert erasure["tenant_id"] == seller.tenant_id and erasure["status"] == "running"
    assert erasure["services"] == {
        "gateway": "done",
        "ingest": "pending",
        "metrics": "pending",
        "targets": "pending",
    }
    erasure = await erasure_done(http, seller, seller.tenant_id)
    assert erasure["id"] == erased.json()["id"]
    assert erasure["rows_deleted"]["metrics"] > 0 and erasure["rows_deleted"]["targets"] == 1

    # Nothing of the seller is left anywhere but the erasure's own record.
    left = {table: n for table, n in (await tenant_rows(pg, seller.tenant_id)).items() if n}
    assert left == {("gateway", "erasures"): 1}
    # The grant ended with the seller; its clients cannot get tokens any more.
    assert await march_gmv(http, agency, seller.tenant_id) == "FORBIDDEN"
    direct = await http.get(
        f"{stack.url('metrics')}/v1/kpis",
        params={**REST_MARCH, "tenant_id": seller.tenant_id},
        headers=agency.headers,
    )
    assert direct.status_code == 403
    renewed = await http.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(seller.client_id, seller.client_secret),
    )
    assert renewed.status_code == 401
    # Its access token still verifies, but no service takes a write of it any more.
    late_push = await http.post(
        f"{stack.url('ingest')}/v1/events",
        json={"events": [{"event_id": "late"}]},
        headers=seller.headers,
    )
    assert late_push.status_code == 403 and "erased" in late_push.json()["detail"]
    late_settings = await http.put(
        f"{stack.url('metrics')}/v1/settings/kpi", json={}, headers=seller.headers
    )
    assert late_settings.status_code == 403
    # The other tenant keeps everything.
    assert await march_gmv(http, other, other.tenant_id) == 7.0
    kept = await tenant_rows(pg, other.tenant_id)
    assert kept[("targets", "target_plans")] == 1 and kept[("metrics", "kpi_settings")] == 1
    assert kept[("gateway", "tenants")] == 1

    # The seller's token still verifies until it expires, but no write of it is taken
    # at the gateway either, nor audited: nothing of the seller comes back.
    late_writes: list[tuple[str, dict[str, Any] | None]] = [
        ("/v1/exports", None),
        ("/v1/users", {"email": "late@seller.example", "name": "L", "role": "analyst",
                       "password": "correct horse battery"}),
        ("/v1/grants", {"agency_tenant_id": agency.tenant_id, "stores": ["acme-us"],
                        "scopes": ["kpi:read"]}),
    ]  # fmt: skip
    for url, body in late_writes:
        late = await http.post(url, json=body, headers=seller.headers)
        assert late.status_code == 403 and "erased" in late.json()["detail"], (url, late.text)
    left = {table: n for table, n in (await tenant_rows(pg, seller.tenant_id)).items() if n}
    assert left == {("gateway", "erasures"): 1}

    # Not again by the erased tenant's own token, as no write of it; nor a client.
    again = await http.request(
        "DELETE", f"/v1/tenants/{seller.tenant_id}", json=confirm, headers=seller.headers
    )
    assert again.status_code == 403 and "erased" in again.json()["detail"], again.text
    client = await http.post(
        f"/v1/tenants/{seller.tenant_id}/clients",
        json={"name": "late", "scopes": ["kpi:read"]},
        headers=seller.headers,
    )
    assert client.status_code == 403 and "erased" in client.json()["detail"], client.text
    # The platform admin may ask again (the broker was down, say): every service erases
    # again, and the first record, its time and counts, stays the one proof.
    admin = {"Authorization": f"Bearer {admin_token}"}
    proof = await erasure_done(http, seller, seller.tenant_id, admin)
    twice = await http.request(
        "DELETE", f"/v1/tenants/{seller.tenant_id}", json=confirm, headers=admin
    )
    assert twice.status_code == 202, twice.text
    assert twice.json()["id"] == erasure["id"]
    assert await erasure_done(http, seller, seller.tenant_id, admin) == proof
    left = {table: n for table, n in (await tenant_rows(pg, seller.tenant_id)).items() if n}
    assert left == {("gateway", "erasures"): 1}


async def erasure_done(
    http: httpx.AsyncClient,
    who: TenantClient,
    tenant_id: str,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        polled = await http.get(f"/v1/tenants/{tenant_id}/erasure", headers=headers or who.headers)
        assert polled.status_code == 200, polled.text
        body = polled.json()
        if body["status"] == "done":
            assert set(body["services"].values()) == {"done"}
            assert body["finished_at"] is not None
            return body
        await asyncio.sleep(0.2)
    raise AssertionError(f"erasure not done: {body}")


async def erase(http: httpx.AsyncClient, who: TenantClient) -> httpx.Response:
    """The tenant's own admin asks for its erasure."""
    return await http.request(
        "DELETE",
        f"/v1/tenants/{who.tenant_id}",
        json={"confirm": who.tenant_id},
        headers=who.headers,
    )


async def erased_by_itself(http: httpx.AsyncClient, who: TenantClient) -> None:
    """The tenant's own admin erases it, and every service has finished."""
    erased = await erase(http, who)
    assert erased.status_code == 202, erased.text
    await erasure_done(http, who, who.tenant_id)


async def test_unknown_running_and_abandoned_exports_answer_plainly(
    http: httpx.AsyncClient, new_tenant: NewTenant, pg: Any
) -> None:
    seller = await new_tenant()
    assert (await http.get("/v1/exports/ex_nope", headers=seller.headers)).status_code == 404
    assert (
        await http.get("/v1/exports/ex_nope/archive", headers=seller.headers)
    ).status_code == 404
    now = datetime.now(UTC)
    for export_id, heartbeat in (("ex_run", now), ("ex_dead", now - timedelta(minutes=5))):
        await pg.execute(
            "INSERT INTO gateway.exports (id, tenant_id, requested_by, status, created_at, "
            "heartbeat_at) VALUES ($1, $2, 'test', 'running', $3, $3)",
            f"{export_id}_{seller.tenant_id}",
            seller.tenant_id,
            heartbeat,
        )
    running = f"ex_run_{seller.tenant_id}"
    busy = await http.get(f"/v1/exports/{running}/archive", headers=seller.headers)
    assert busy.status_code == 409 and "running" in busy.json()["detail"]
    assert (await http.get(f"/v1/exports/{running}", headers=seller.headers)).json()[
        "status"
    ] == "running"
    # Its builder stopped beating five minutes ago: failed, and says why.
    dead = f"ex_dead_{seller.tenant_id}"
    status = (await http.get(f"/v1/exports/{dead}", headers=seller.headers)).json()
    assert status["status"] == "failed" and "stopped" in status["error"]
    assert status["download_url"] is None
    gone = await http.get(f"/v1/exports/{dead}/archive", headers=seller.headers)
    assert (
        gone.status_code == 409
        and "cannot be downloaded: the gateway process" in gone.json()["detail"]
    )
    # One export is built at a time: asked again meanwhile, 409 names the one running,
    # which began before and may not hold what the caller wrote since.
    again = await http.post("/v1/exports", headers=seller.headers)
    assert again.status_code == 409, again.text
    assert again.headers["location"] == f"/v1/exports/{running}"
    assert again.json()["detail"].startswith(f"export {running} of this tenant is running")
    assert "may not hold what was written since" in again.json()["detail"]


async def test_a_tenant_keeps_its_five_newest_exports(
    http: httpx.AsyncClient, new_tenant: NewTenant, pg: Any
) -> None:
    """Each is a whole copy of the tenant's data in the gateway's database; twenty asked
    in a second were twenty copies, kept for ever."""
    seller = await new_tenant()
    start = datetime.now(UTC) - timedelta(days=1)
    for n in range(6):
        await pg.execute(
            "INSERT INTO gateway.exports (id, tenant_id, requested_by, status, created_at, "
            "heartbeat_at, finished_at) VALUES ($1, $2, 'test', 'ready', $3, $3, $3)",
            f"ex_old{n}_{seller.tenant_id}",
            seller.tenant_id,
            start + timedelta(minutes=n),
        )
    started = await http.post("/v1/exports", headers=seller.headers)
    assert started.status_code == 202, started.text
    listed = await http.get("/v1/exports", headers=seller.headers)
    ids = [e["id"] for e in listed.json()["exports"]]
    assert ids == [started.json()["id"]] + [
        f"ex_old{n}_{seller.tenant_id}" for n in (5, 4, 3, 2, 1, 0)
    ]
    # Past five, an archive is deleted, and its export says so, not "no export".
    dropped = f"ex_old{{}}_{seller.tenant_id}"
    forgotten = await http.get(f"/v1/exports/{dropped.format(0)}", headers=seller.headers)
    assert forgotten.status_code == 200, forgotten.text
    assert forgotten.json()["status"] == "failed"
    assert forgotten.json()["error"] == (
        "its archive was deleted: a tenant keeps those of its 5 newest exports; "
        "request a new export"
    )
    assert forgotten.json()["download_url"] is None
    archive = await http.get(f"/v1/exports/{dropped.format(0)}/archive", headers=seller.headers)
    assert archive.status_code == 409
    assert "its archive was deleted" in archive.json()["detail"]
    kept = await http.get(f"/v1/exports/{dropped.format(2)}", headers=seller.headers)
    assert kept.json()["status"] == "ready"


async def test_each_service_serves_only_its_callers_tenant_data(
    http: httpx.AsyncClient, stack: Stack, new_tenant: NewTenant, admin_token: str
) -> None:
    seller = await new_tenant()
    reader = await client_of(http, admin_token, seller.tenant_id, ["kpi:read"])
    for service in ("ingest", "metrics", "targets"):
        base = f"{stack.url(service)}/internal/tenant-data"
        listed = await http.get(base, headers=seller.headers)
        assert listed.status_code == 200, (service, listed.text)
        names = [t["name"] for t in listed.json()["tables"]]
        assert names and "alembic_version" not in names
        first = await http.get(f"{base}/{names[0]}", headers=seller.headers)
        assert first.status_code == 200
        assert first.headers["content-type"] == "application/x-ndjson"
        assert (await http.get(f"{base}/no_such_table", headers=seller.headers)).status_code == 404
        assert (await http.get(base, headers=reader.headers)).status_code == 403
        assert (await http.get(base)).status_code == 401
    # The gateway is public: its tables leave by an export (audited), its trail by
    # GET /v1/audit, never table by table from a route of its own.
    for internal in ("/internal/tenant-data", "/internal/tenant-data/users", "/internal/audit"):
        assert (await http.get(internal, headers=seller.headers)).status_code == 404, internal


async def test_erasing_a_tenant_that_never_existed_is_404(
    http: httpx.AsyncClient, admin_token: str
) -> None:
    admin = {"Authorization": f"Bearer {admin_token}"}
    answer = await http.request(
        "DELETE", "/v1/tenants/tn_nobody", json={"confirm": "tn_nobody"}, headers=admin
    )
    assert answer.status_code == 404
    assert (await http.get("/v1/tenants/tn_nobody/erasure", headers=admin)).status_code == 404


async def test_an_admin_limited_to_some_stores_can_neither_export_nor_erase(
    http: httpx.AsyncClient, stack: Stack, new_tenant: NewTenant
) -> None:
    seller = await new_tenant()
    limited = await add_user(http, seller, "admin", limits={"stores": ["acme-us"]})
    client_id = await frontend_client(http, seller)
    tokens = await user_tokens(http, client_id, limited["email"], scope="tenant:admin kpi:read")
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    for method, url, body in (
        ("POST", "/v1/exports", None),
        ("GET", "/v1/exports", None),
        ("GET", f"{stack.url('metrics')}/internal/tenant-data", None),
        ("DELETE", f"/v1/tenants/{seller.tenant_id}", {"confirm": seller.tenant_id}),
    ):
        answer = await http.request(method, url, json=body, headers=headers)
        assert answer.status_code == 403, (url, answer.text)
        assert "limited" in answer.json()["detail"]
    # The tenant is still there.
    assert (
        await http.get(f"/v1/tenants/{seller.tenant_id}", headers=seller.headers)
    ).status_code == 200


async def test_of_a_tenants_users_only_an_owner_erases_it(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    """An admin may not make, change or act as an owner; erasing ends every owner's
    account with the rest, so it is an owner's alone (or a client's, which has no role)."""
    seller = await new_tenant()
    client_id = await frontend_client(http, seller)
    for role, status in (("admin", 403), ("owner", 202)):
        user = await add_user(http, seller, role)
        tokens = await user_tokens(http, client_id, user["email"], scope="tenant:admin")
        answer = await http.request(
            "DELETE",
            f"/v1/tenants/{seller.tenant_id}",
            json={"confirm": seller.tenant_id},
            headers={"Authorization": f"Bearer {tokens['access_token']}"},
        )
        assert answer.status_code == status, (role, answer.text)
        if status == 403:
            assert answer.json()["detail"] == "only an owner can erase the tenant"
            still = await http.get(f"/v1/tenants/{seller.tenant_id}", headers=seller.headers)
            assert still.status_code == 200


async def test_a_write_naming_an_erased_tenant_tells_an_outsider_only_no_access(
    http: httpx.AsyncClient, stack: Stack, new_tenant: NewTenant
) -> None:
    """To a caller without a grant, an erased tenant is one out of reach, as one that
    never was: "has been erased" told any tenant that it had existed."""
    seller, outsider = await new_tenant(), await new_tenant()
    await erased_by_itself(http, seller)
    never = "tn_0000000000000000"
    writes: list[tuple[str, str, str, dict[str, Any] | None]] = [
        (stack.url("gateway"), "POST", "/v1/events", {"events": [sale("x", "acme-us", "1.00")]}),
        (stack.url("ingest"), "POST", "/v1/events", {"events": [sale("x", "acme-us", "1.00")]}),
        (stack.url("gateway"), "PUT", "/v1/settings/kpi", {"gmv_includes_tax": True}),
        (stack.url("metrics"), "PUT", "/v1/settings/kpi", {"gmv_includes_tax": True}),
        (stack.url("gateway"), "POST", "/v1/exports", None),
        (stack.url("gateway"), "POST", "/v1/users", {"email": "x@y.example", "name": "X",
                                                     "role": "analyst",
                                                     "password": "correct horse battery"}),
    ]  # fmt: skip
    for base, method, path, body in writes:
        for tenant_id in (seller.tenant_id, never):
            answer = await http.request(
                method,
                f"{base}{path}",
                params={"tenant_id": tenant_id},
                json=body,
                headers=outsider.headers,
            )
            assert answer.status_code == 403, (path, answer.text)
            detail = answer.json()["detail"]
            assert detail == f"no access to tenant {tenant_id}", (path, detail)
    # The erased tenant's own token is told so, naming it.
    own = await http.post(
        "/v1/events", json={"events": [sale("x", "acme-us", "1.00")]}, headers=seller.headers
    )
    assert own.status_code == 403
    assert own.json()["detail"] == f"tenant {seller.tenant_id} has been erased"


async def test_writes_of_an_erased_tenant_stop_at_the_gateway_after_services_restart(
    http: httpx.AsyncClient, stack: Stack, new_tenant: NewTenant, admin_token: str
) -> None:
    seller = await new_tenant()
    await erased_by_itself(http, seller)
    # As a restarted ingest and targets would be: they remember no erasure themselves.
    restarted = {name: stack.apps[name].state for name in ("ingest", "targets")}
    remembered = {name: state.erased.recent for name, state in restarted.items()}
    # The gateway lists the erased tenants beside the revoked tokens, which every
    # service reads each second and at its start.
    deadline = time.monotonic() + 5
    while not all(state.revocations.erased(seller.tenant_id) for state in restarted.values()):
        assert time.monotonic() < deadline, "a service never read the erasure from the gateway"
        await asyncio.sleep(0.1)
    try:
        for state in restarted.values():
            state.erased.recent = RecentlyErased()
        # So their own ports refuse the tenant too.
        direct = await http.post(
            f"{stack.url('ingest')}/v1/events",
            json={"events": [sale("late", "acme-us", "1.00")]},
            headers=seller.headers,
        )
        assert direct.status_code == 403 and "erased" in direct.json()["detail"], direct.text
        push = await http.post(
            "/v1/events", json={"events": [sale("late", "acme-us", "1.00")]}, headers=seller.headers
        )
        assert push.status_code == 403 and "erased" in push.json()["detail"], push.text
        plan = await http.post("/v1/targets", json={}, headers=seller.headers)
        assert plan.status_code == 403 and "erased" in plan.json()["detail"], plan.text
        # Reading finds nothing, which is true; the services answer it.
        kpis = await http.get("/v1/kpis", params=REST_MARCH, headers=seller.headers)
        assert kpis.status_code == 200
        assert [v["value"] for row in kpis.json()["rows"] for v in row["values"]] == [0.0]
    finally:
        for name, state in restarted.items():
            state.erased.recent = remembered[name]
    # A gateway started afresh knows it from the erasure records.
    tracker = ErasureTracker(stack.apps["gateway"].state.db, stack.apps["gateway"].state.settings)
    await tracker.load_erased()
    assert seller.tenant_id in tracker.erased
    other = await new_tenant()
    assert other.tenant_id not in tracker.erased


async def test_an_archive_holding_an_erased_partners_grant_is_withdrawn(
    http: httpx.AsyncClient, new_tenant: NewTenant, pg: Any
) -> None:
    """An agency's archive lists the grants it received (the seller's id, store names and
    scopes): once the seller is erased, the archive built before must not serve them."""
    seller, agency, bystander = await new_tenant(), await new_tenant(), await new_tenant()
    before_the_grant = await finished_export(http, agency)
    granted = await http.post(
        "/v1/grants",
        json={"agency_tenant_id": agency.tenant_id, "stores": ["s1"], "scopes": ["kpi:read"]},
        headers=seller.headers,
    )
    assert granted.status_code == 201, granted.text
    held = await finished_export(http, agency)
    kept = await finished_export(http, bystander)
    _, files = await download(http, agency, held)
    assert seller.tenant_id.encode() in files["gateway/grants.ndjson"]
    # Who at the seller issued it (its client's id, which an attacker could spend) is
    # the seller's own: the agency's archive says null, the seller's names it.
    [received] = [orjson.loads(line) for line in files["gateway/grants.ndjson"].splitlines()]
    assert received["created_by"] is None
    _, issued = await download(http, seller, await finished_export(http, seller))
    [given] = [orjson.loads(line) for line in issued["gateway/grants.ndjson"].splitlines()]
    assert given["created_by"] == seller.client_id
    # One being built as the seller is erased may have read the grant already.
    building = f"ex_building_{agency.tenant_id}"
    await pg.execute(
        "INSERT INTO gateway.exports (id, tenant_id, requested_by, status, created_at, "
        "heartbeat_at) VALUES ($1, $2, 'test', 'running', now(), now())",
        building,
        agency.tenant_id,
    )
    await erased_by_itself(http, seller)
    built = (await http.get(f"/v1/exports/{building}", headers=agency.headers)).json()
    assert (built["status"], built["error"]) == ("failed", WITHDRAWN), built
    withdrawn = await http.get(held["download_url"], headers=agency.headers)
    assert withdrawn.status_code == 409, withdrawn.text
    assert withdrawn.json()["detail"] == (
        f"export {held['id']} cannot be downloaded: it held grants of a tenant erased "
        "since; request a new export"
    )
    status = (await http.get(f"/v1/exports/{held['id']}", headers=agency.headers)).json()
    assert status["status"] == "failed" and status["download_url"] is None
    # A tenant that shared nothing with it keeps its archive, and so does the partner
    # an archive it built before they shared anything.
    await download(http, bystander, kept)
    await download(http, agency, before_the_grant)
    # A new archive is whole, and names the erased seller nowhere.
    _, files = await download(http, agency, await finished_export(http, agency))
    assert not any(seller.tenant_id.encode() in data for data in files.values())


async def added_beside_its_erasure(
    http: httpx.AsyncClient,
    pg: Any,
    tenant: TenantClient,
    adding: Awaitable[httpx.Response],
    table: str,
    after: float = 0.0,
    answers: tuple[int, ...] = (201, 403),
) -> None:
    """Adds a row of ``tenant`` (``adding``) while erasing it, ``after`` seconds later:
    refused (403) or added and erased, nothing of it left in ``table``."""

    async def erase_soon() -> httpx.Response:
        await asyncio.sleep(after)
        return await erase(http, tenant)

    added, erased = await asyncio.gather(adding, erase_soon())
    assert erased.status_code == 202, erased.text
    assert added.status_code in answers, added.text
    await erasure_done(http, tenant, tenant.tenant_id)
    left = await pg.fetchval(
        f"SELECT count(*) FROM gateway.{table} WHERE tenant_id = $1", tenant.tenant_id
    )
    assert left == 0


async def test_a_user_added_as_its_tenant_is_erased_is_refused_or_erased_too(
    http: httpx.AsyncClient, new_tenant: NewTenant, pg: Any
) -> None:
    """Adding a user hashes its password for half a second: an erasure meanwhile took the
    tenant's row, and the insert was a foreign-key 500."""
    user = {"email": "late@example.com", "name": "L", "password": "p" * 12, "role": "viewer"}
    for delay in (0.05, 0.2):
        tenant = await new_tenant()
        adding = http.post("/v1/users", json=user, headers=tenant.headers)
        await added_beside_its_erasure(http, pg, tenant, adding, "users", delay)


async def test_a_gateway_row_added_as_its_tenant_is_erased_waits_for_the_erasure(
    http: httpx.AsyncClient, new_tenant: NewTenant, pg: Any
) -> None:
    """Beside an erasure under way (its lock), a new client, grant (of either side) or
    export waits, and is then refused or erased with the rest; before, its row could
    commit behind the erasure's delete, or break it on the tenant's foreign key."""
    tenant, agency = await new_tenant(), await new_tenant()
    grant = {"agency_tenant_id": agency.tenant_id, "stores": ["s1"], "scopes": ["kpi:read"]}
    for erasing, path, body in (
        (
            tenant,
            f"/v1/tenants/{tenant.tenant_id}/clients",
            {"name": "late", "scopes": ["kpi:read"]},
        ),
        (tenant, "/v1/grants", grant),
        (agency, "/v1/grants", {**grant, "stores": ["s2"]}),
        (tenant, "/v1/exports", None),
    ):
        async with pg.transaction():
            await pg.execute(
                "SELECT pg_advisory_xact_lock(hashtext('erasure:' || $1::text))",
                erasing.tenant_id,
            )
            adding = asyncio.create_task(http.post(path, json=body, headers=tenant.headers))
            await asyncio.sleep(0.3)
            assert not adding.done(), path
        assert (await adding).status_code == (202 if path == "/v1/exports" else 201), path
        if path == "/v1/grants":
            # One grant at a time to an agency: the next waits on its erasure too.
            listed = (await http.get("/v1/grants", headers=tenant.headers)).json()["grants"]
            for made in listed:
                await http.delete(f"/v1/grants/{made['id']}", headers=tenant.headers)
    path = f"/v1/tenants/{tenant.tenant_id}/clients"
    late = http.post(path, json={"name": "late", "scopes": ["kpi:read"]}, headers=tenant.headers)
    await added_beside_its_erasure(http, pg, tenant, late, "oauth_clients")


# Writes of the services that add a row of the tenant, and the table it lands in.
ROW_ADDING_WRITES = [
    ("metrics", "PUT", "/v1/settings/kpi", {"gmv_includes_tax": True}, "kpi_settings"),
    ("metrics", "PUT", "/v1/settings/stores/s1", {"timezone": "Asia/Tokyo"}, "store_timezones"),
    (
        "ingest",
        "POST",
        "/v1/connections",
        {
            "platform": "shopify",
            "store_id": "s1",
            "marketplace": "US",
            "granted_scopes": ["read_orders"],
            "credentials": {"access_token": "t"},
        },
        "connections",
    ),
]


async def test_a_write_during_its_tenants_erasure_in_a_service_leaves_no_row(
    http: httpx.AsyncClient, new_tenant: NewTenant, pg: Any, stack: Stack
) -> None:
    """A setting or a connection written while the service's erasure listener deleted
    the tenant's rows was kept: checked for erasure before, written after. Now it waits
    for the erasure (its lock) and is refused."""
    for service, method, path, body, table in ROW_ADDING_WRITES:
        tenant = await new_tenant()
        async with pg.transaction():
            # What the erasure listener holds while it deletes, the tenant counted erased.
            await pg.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended($1 || '/' || $2, 0))",
                service,
                tenant.tenant_id,
            )
            writing = asyncio.create_task(
                http.request(method, path, json=body, headers=tenant.headers)
            )
            await asyncio.sleep(0.3)
            assert not writing.done(), path
            stack.apps[service].state.erased.add(tenant.tenant_id)
        answer = await writing
        assert answer.status_code == 403, (path, answer.text)
        assert "erased" in answer.json()["detail"]
        left = await pg.fetchval(
            f"SELECT count(*) FROM {service}.{table} WHERE tenant_id = $1", tenant.tenant_id
        )
        assert left == 0, path


async def test_a_sign_in_or_refresh_during_its_tenants_erasure_waits_for_it(
    http: httpx.AsyncClient, new_tenant: NewTenant, pg: Any
) -> None:
    """A code or refresh token minted while the erasure deleted the tenant's sign-ins
    held the user's row: the erasure then failed on the user's foreign key (a 500), or
    the row outlived it. Minting now waits for the erasure's lock, then finds no user."""
    tenant = await new_tenant()
    client_id = await frontend_client(http, tenant)
    user = await add_user(http, tenant, "viewer")
    tokens = await user_tokens(http, client_id, user["email"])
    form = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
    async with pg.transaction():
        await pg.execute(
            "SELECT pg_advisory_xact_lock(hashtext('erasure:' || $1::text))", tenant.tenant_id
        )
        refreshing = asyncio.create_task(
            http.post("/oauth/token", data={"client_id": client_id, **form})
        )
        signing_in = asyncio.create_task(user_tokens(http, client_id, user["email"]))
        await asyncio.sleep(0.5)
        assert not refreshing.done() and not signing_in.done()
    assert (await refreshing).status_code == 200
    await signing_in
    erased = await erase(http, tenant)
    assert erased.status_code == 202, erased.text


async def test_a_sign_in_failing_as_its_tenant_is_erased_leaves_no_count(
    http: httpx.AsyncClient, new_tenant: NewTenant, pg: Any
) -> None:
    """A sign-in whose password check (half a second) outlasted its tenant's erasure
    counted a failure, with the person's e-mail address, after the erasure."""
    for delay in (0.05, 0.15):
        tenant = await new_tenant()
        client_id = await frontend_client(http, tenant)
        user = await add_user(http, tenant, "analyst")
        params = authorize_params(client_id, pkce()[1])
        signing_in = http.post(
            "/oauth/authorize", data={**params, "email": user["email"], "password": PASSWORD}
        )
        # Signed in before the erasure (a redirect with a code), or refused after it.
        answers = (303, 401)
        await added_beside_its_erasure(http, pg, tenant, signing_in, "users", delay, answers)
        counted = await pg.fetchval(
            "SELECT count(*) FROM gateway.sign_in_failures WHERE tenant_id = $1", tenant.tenant_id
        )
        assert counted == 0


async def test_partners_erased_at_once_are_both_erased_without_a_retry(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    """Partners share grants (and their audit entries name each other): two erasures
    at once deleted the shared rows in opposite orders, and one was rolled back as a
    deadlock (503). Erasures now take their turn."""
    pairs = []
    for _ in range(4):
        seller, agency = await new_tenant(), await new_tenant()
        for granting, granted in ((seller, agency), (agency, seller)):
            grant = await http.post(
                "/v1/grants",
                json={
                    "agency_tenant_id": granted.tenant_id,
                    "stores": ["s1"],
                    "scopes": ["kpi:read"],
                },
                headers=granting.headers,
            )
            assert grant.status_code == 201, grant.text
            # Each trail names the other: an attempt on the partner's tenant.
            refused = await http.request(
                "DELETE",
                f"/v1/tenants/{granted.tenant_id}",
                json={"confirm": granted.tenant_id},
                headers=granting.headers,
            )
            assert refused.status_code == 403, refused.text
        pairs.append((seller, agency))
    answers = await asyncio.gather(*(erase(http, who) for pair in pairs for who in pair))
    assert [answer.status_code for answer in answers] == [202] * len(answers), [
        answer.text for answer in answers
    ]
    for pair in pairs:
        for who in pair:
            await erasure_done(http, who, who.tenant_id)
