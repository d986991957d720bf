"""Platform connections stay read-only: a credential that may write is refused by name,
and credentials are sealed at rest and never answered back."""

from __future__ import annotations

from typing import Any

import asyncpg
import httpx
import orjson
import pytest
from cryptography.fernet import Fernet

from devstack.embedded import free_port
from devstack.stack import service_settings
from services.ingest.app import create_app as ingest_app
from services.ingest.connections.crypto import CredentialBox
from services.ingest.connections.permissions import write_access
from shared.db import asyncpg_dsn
from shared.errors import UpstreamUnavailable
from tests.conftest import FreshDatabase, NewTenant, Stack, serve_app

REFRESH_TOKEN = "Atzr|very-secret-refresh-token"


def connection(**changes: Any) -> dict[str, Any]:
    return {
        "platform": "shopify",
        "store_id": "acme-shop",
        "marketplace": "US",
        "granted_scopes": ["read_orders", "read_products"],
        "credentials": {"access_token": REFRESH_TOKEN},
        **changes,
    }


@pytest.mark.parametrize(
    ("platform", "scopes", "field"),
    [
        ("shopify", ["read_orders", "write_orders"], "granted_scopes.1"),
        ("mercadolibre", ["read", "offline_access", "write"], "granted_scopes.2"),
        ("amazon", ["Pricing"], "granted_scopes.0"),
        ("amazon_ads", ["advertising::campaign_management"], "granted_scopes.0"),
        ("walmart", ["Orders: Full Access"], "granted_scopes.0"),
        ("walmart", ["Full  Access"], "granted_scopes.0"),
        ("amazon", ["Inventory and Order Tracking", "Product \t Listing"], "granted_scopes.1"),
        ("tiktok", ["seller.order.info", "seller.product.write"], "granted_scopes.1"),
        ("amazon", ["ProductListing"], "granted_scopes.0"),
        ("amazon_ads", ["CampaignManagement"], "granted_scopes.0"),
    ],
)
async def test_a_credential_that_may_write_is_refused_naming_the_scope(
    http: httpx.AsyncClient, new_tenant: NewTenant, platform: str, scopes: list[str], field: str
) -> None:
    tenant = await new_tenant()
    response = await http.post(
        "/v1/connections",
        json=connection(platform=platform, granted_scopes=scopes),
        headers=tenant.headers,
    )
    assert response.status_code == 422, response.text
    assert [e["field"] for e in response.json()["errors"]] == [field]
    listed = await http.get("/v1/connections", headers=tenant.headers)
    assert listed.json()["connections"] == []


async def test_connections_are_added_paused_reauthorised_and_removed(
    http: httpx.AsyncClient, pg: asyncpg.Connection, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant()
    created = await http.post("/v1/connections", json=connection(), headers=tenant.headers)
    assert created.status_code == 201, created.text
    body = created.json()
    assert "credentials" not in body and REFRESH_TOKEN not in created.text
    assert body["granted_scopes"] == ["read_orders", "read_products"]
    assert body["status"] == "active"
    again = await http.post("/v1/connections", json=connection(), headers=tenant.headers)
    assert again.status_code == 409
    sealed = await pg.fetchval(
        "SELECT credentials FROM ingest.connections WHERE id = $1", body["id"]
    )
    assert REFRESH_TOKEN.encode() not in sealed
    path = f"/v1/connections/{body['id']}"
    paused = await http.patch(path, json={"status": "paused"}, headers=tenant.headers)
    assert paused.status_code == 200 and paused.json()["status"] == "paused"
    widened = await http.patch(
        path, json={"granted_scopes": ["read_orders", "write_products"]}, headers=tenant.headers
    )
    assert widened.status_code == 422
    assert widened.json()["errors"][0]["field"] == "granted_scopes.1"
    unsealable = await http.patch(
        path, json={"credentials": {"access_token": "x", "n": -(2**64)}}, headers=tenant.headers
    )
    assert unsealable.status_code == 422, unsealable.text
    assert unsealable.json()["errors"][0]["field"] == "credentials"
    listed = await http.get("/v1/connections", headers=tenant.headers)
    assert listed.json()["connections"][0]["granted_scopes"] == ["read_orders", "read_products"]
    other = await new_tenant()
    assert (await http.patch(path, json={}, headers=other.headers)).status_code == 404
    assert (await http.delete(path, headers=other.headers)).status_code == 404
    assert (await http.delete(path, headers=tenant.headers)).status_code == 204
    assert (await http.delete(path, headers=tenant.headers)).status_code == 404


async def test_bad_connections_name_the_field_and_need_the_scope(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant()
    for change, field in (
        ({"platform": "ebay"}, "platform"),
        ({"marketplace": "usa"}, "marketplace"),
        ({"granted_scopes": []}, "granted_scopes"),
        ({"credentials": "token"}, "credentials"),
        # Past what an event may name as a store: in bytes, then in characters.
        ({"store_id": "店" * 171}, "store_id"),
        ({"store_id": "s" * 257}, "store_id"),
        # What cannot be sealed as JSON: a number past 64 bits was a 500.
        ({"credentials": {"access_token": "x", "n": 2**64}}, "credentials"),
    ):
        response = await http.post(
            "/v1/connections", json=connection(**change), headers=tenant.headers
        )
        assert response.status_code == 422, change
        assert response.json()["errors"][0]["field"] == field, change
    # Read as infinity, 1e400 was sealed as null: a credential kept otherwise than sent.
    infinite = await http.post(
        "/v1/connections",
        content=orjson.dumps(connection())[:-2] + b',"expires_in":1e400}}',
        headers={**tenant.headers, "Content-Type": "application/json"},
    )
    assert infinite.status_code == 422, infinite.text
    assert infinite.json()["errors"][0]["field"] == "credentials"
    # Any store an event may name can be connected: 256 characters were refused at 200.
    longest = await http.post(
        "/v1/connections", json=connection(store_id="s" * 256), headers=tenant.headers
    )
    assert longest.status_code == 201, longest.text
    reader = await new_tenant(scopes=["kpi:read"])
    denied = await http.post("/v1/connections", json=connection(), headers=reader.headers)
    assert denied.status_code == 403 and denied.json()["error"] == "insufficient_scope"


def test_read_scopes_pass_and_credentials_round_trip_only_with_the_key() -> None:
    for platform, scope in (
        ("shopify", "read_all_orders"),
        ("mercadolibre", "offline_access"),
        ("amazon", "Inventory and Order Tracking"),
        ("amazon_ads", "advertising::campaign_read"),
        ("walmart", "Orders: View Only"),
        ("shopify", "read_store_credit_account_transactions"),
        ("amazon", "InventoryAndOrderTracking"),
        ("amazon", "Finance and Accounting, Selling Partner Insights"),
        ("amazon", "Brand Analytics; Tax Remittance"),
        ("amazon_ads", "CampaignRead"),
        ("amazon", "Account Information Service Provider"),
    ):
        assert write_access(platform, scope) is None, (platform, scope)
    # However a write scope is spelled, it is one.
    for platform, scope in (
        ("amazon", "productlisting"),
        ("amazon", "Product_Listing"),
        ("amazon", "product-listing"),
        ("amazon", "DIRECT TO CONSUMER SHIPPING"),
        ("amazon_ads", "campaignmanagement"),
        ("amazon_ads", "Campaign-Management"),
        ("walmart", "FullAccess"),
        ("walmart", "full_access"),
        ("shopify", "WriteOrders"),
        ("tiktok", "seller.productwrite"),
        ("shopify", "\uff57rite_orders"),
        # A role joined with others in one string grants it all the same.
        ("amazon", "Orders,Pricing"),
        ("amazon", "Product Listing & Pricing"),
        ("amazon", "sellingpartnerapi::pricing"),
        ("amazon", "Role: Buyer Communication"),
        # Roles that place orders or start payments act on the account too.
        ("amazon", "Amazon Business Order Placement"),
        ("amazon", "Payment Initiation Service Provider"),
    ):
        assert write_access(platform, scope) is not None, (platform, scope)
    box = CredentialBox(Fernet.generate_key().decode())
    assert box.open(box.seal({"refresh_token": "x"})) == {"refresh_token": "x"}
    with pytest.raises(UpstreamUnavailable):
        CredentialBox(Fernet.generate_key().decode()).open(box.seal({"a": 1}))
    with pytest.raises(UpstreamUnavailable, match="LODESTAR_INGEST_CREDENTIALS_KEY"):
        CredentialBox("").seal({"a": 1})


async def test_a_replaced_key_leaves_every_credential_readable_under_the_new_one(
    stack: Stack, fresh_database: FreshDatabase, caplog: pytest.LogCaptureFixture
) -> None:
    url = await fresh_database("ingest")
    old, new, stranger = (Fernet.generate_key().decode() for _ in range(3))
    pg = await asyncpg.connect(asyncpg_dsn(url))
    try:
        for store_id, key in (("acme-shop", old), ("lost-shop", stranger)):
            await pg.execute(
                "INSERT INTO ingest.connections (id, tenant_id, platform, store_id, marketplace,"
                " name, granted_scopes, credentials, created_by) VALUES ($1, 'tn_1', 'shopify',"
                " $1, 'US', $1, '{read_orders}', $2, 'test')",
                store_id,
                CredentialBox(key).seal({"access_token": store_id}),
            )
        port = free_port()
        settings = service_settings("ingest", stack.config).model_copy(
            update={"port": port, "database_url": url, "credentials_key": f"{new},{old}"}
        )
        # Started with the new key first, ingest seals every credential again under it,
        # before it answers.
        async with (
            serve_app(ingest_app(settings), "127.0.0.1", port),
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client,
        ):
            assert (await client.get("/healthz")).status_code == 200
        rows = await pg.fetch("SELECT store_id, credentials FROM ingest.connections")
        # Every start tells which credentials no key given opens, replacing or not, so
        # a key dropped too early is not found out store by store.
        told = {}
        for key in (new, ""):
            caplog.clear()
            with caplog.at_level("ERROR", logger="services.ingest.connections.crypto"):
                async with (
                    serve_app(
                        ingest_app(settings.model_copy(update={"credentials_key": key})),
                        "127.0.0.1",
                        port,
                    ),
                    httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client,
                ):
                    assert (await client.get("/healthz")).status_code == 200
            told[key] = caplog.text
        assert (
            "1 platform credentials are sealed with no key of LODESTAR_INGEST_CREDENTIALS_KEY"
            " and cannot be read: lost-shop"
        ) in told[new]
        assert (
            "2 platform credentials are stored and none can be read:"
            " LODESTAR_INGEST_CREDENTIALS_KEY is unset"
        ) in told[""]
    finally:
        await pg.close()
    sealed = {row["store_id"]: bytes(row["credentials"]) for row in rows}
    assert CredentialBox(new).open(sealed["acme-shop"]) == {"access_token": "acme-shop"}
    with pytest.raises(UpstreamUnavailable):
        CredentialBox(old).open(sealed["acme-shop"])
    # One that no key given opens is left as it was.
    assert CredentialBox(stranger).open(sealed["lost-shop"]) == {"access_token": "lost-shop"}
