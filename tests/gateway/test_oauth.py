"""The authorization server: token endpoint, its errors, keys and metadata."""

from __future__ import annotations

import asyncpg
import httpx
from joserfc import jwt
from joserfc.jwk import KeySet

from shared.db import asyncpg_dsn
from tests.conftest import NewTenant, Stack


async def test_client_credentials_with_basic_and_with_form(
    http: httpx.AsyncClient, new_tenant: NewTenant, stack: Stack
) -> None:
    tenant = await new_tenant(scopes=["kpi:read", "ingest:write"])
    basic = await http.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(tenant.client_id, tenant.client_secret),
    )
    form = await http.post(
        "/oauth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": tenant.client_id,
            "client_secret": tenant.client_secret,
            "scope": "kpi:read",
        },
    )
    assert basic.status_code == form.status_code == 200
    assert basic.headers["cache-control"] == "no-store"
    body = basic.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3600
    assert body["scope"] == "ingest:write kpi:read"
    assert form.json()["scope"] == "kpi:read"

    keys = KeySet.import_key_set((await http.get("/.well-known/jwks.json")).json())
    token = jwt.decode(body["access_token"], keys, algorithms=["RS256"])
    assert token.header["typ"] == "at+jwt"
    assert token.header["kid"] == keys.keys[0].kid
    claims = token.claims
    assert claims["iss"] == stack.gateway
    assert claims["aud"] == "lodestar"
    assert claims["sub"] == claims["client_id"] == tenant.client_id
    assert claims["tenant"] == tenant.tenant_id
    assert claims["exp"] - claims["iat"] == 3600
    assert claims["jti"]


async def test_token_errors_follow_rfc6749(http: httpx.AsyncClient, new_tenant: NewTenant) -> None:
    tenant = await new_tenant(scopes=["kpi:read"])
    wrong = await http.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(tenant.client_id, "not-the-secret"),
    )
    assert wrong.status_code == 401
    assert wrong.json()["error"] == "invalid_client"
    assert wrong.headers["www-authenticate"].startswith("Basic")
    unknown = await http.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "client_id": "nobody", "client_secret": "x"},
    )
    assert unknown.status_code == 401
    assert unknown.json()["error"] == "invalid_client"
    grant = await http.post(
        "/oauth/token",
        data={"grant_type": "password"},
        auth=(tenant.client_id, tenant.client_secret),
    )
    assert grant.status_code == 400
    assert grant.json()["error"] == "unsupported_grant_type"
    scope = await http.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "scope": "kpi:read tenant:admin"},
        auth=(tenant.client_id, tenant.client_secret),
    )
    assert scope.status_code == 400
    assert scope.json()["error"] == "invalid_scope"
    assert "tenant:admin" in scope.json()["error_description"]
    missing = await http.post(
        "/oauth/token", data={}, auth=(tenant.client_id, tenant.client_secret)
    )
    assert missing.status_code == 400
    assert missing.json()["error"] == "invalid_request"
    as_json = await http.post("/oauth/token", json={"grant_type": "client_credentials"})
    assert as_json.status_code == 400
    assert as_json.json()["error"] == "invalid_request"


async def test_metadata_and_jwks(http: httpx.AsyncClient, stack: Stack) -> None:
    metadata = (await http.get("/.well-known/oauth-authorization-server")).json()
    assert metadata["issuer"] == stack.gateway
    assert metadata["token_endpoint"] == f"{stack.gateway}/oauth/token"
    assert metadata["jwks_uri"] == f"{stack.gateway}/.well-known/jwks.json"
    assert "client_credentials" in metadata["grant_types_supported"]
    assert metadata["token_endpoint_auth_signing_alg_values_supported"] == ["RS256"]
    openid = (await http.get("/.well-known/openid-configuration")).json()
    assert openid["issuer"] == stack.gateway
    jwks = (await http.get("/.well-known/jwks.json")).json()
    assert jwks["keys"] and all(set(k) >= {"kty", "kid", "n", "e"} for k in jwks["keys"])
    # Public keys only.
    assert all("d" not in key and "p" not in key for key in jwks["keys"])


async def test_client_secret_is_stored_hashed_and_shown_once(
    http: httpx.AsyncClient, new_tenant: NewTenant, database_url: str
) -> None:
    tenant = await new_tenant(scopes=["kpi:read"])
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        stored = await conn.fetchval(
            "SELECT secret_hash FROM gateway.oauth_clients WHERE client_id = $1", tenant.client_id
        )
    finally:
        await conn.close()
    assert stored and tenant.client_secret not in stored
    assert stored.startswith("sha256$")


async def test_signing_key_is_kept_across_restarts(
    http: httpx.AsyncClient, database_url: str
) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        kids = await conn.fetch("SELECT kid FROM gateway.signing_keys WHERE retired_at IS NULL")
    finally:
        await conn.close()
    published = (await http.get("/.well-known/jwks.json")).json()["keys"]
    assert [k["kid"] for k in published] == [r["kid"] for r in kids]
    assert len(kids) == 1
