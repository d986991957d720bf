"""The authorization server: token endpoint, its errors, keys and metadata."""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
from pathlib import Path
from urllib.parse import quote, quote_plus

import asyncpg
import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet

from devstack.launcher import Launcher
from devstack.stack import AdminCredentials
from services.gateway.config import Settings
from services.gateway.oauth.secrets import new_client_id, new_client_secret
from services.gateway.oauth.signing import load_signer
from shared.db import Database, asyncpg_dsn
from shared.scopes import ALL_SCOPES
from tests.conftest import FreshDatabase, NewTenant, Stack, fetch_token
from tests.gateway.support import own_gateway


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
    # A media type is read in any case (RFC 9110 §8.3.1).
    shouted = await http.post(
        "/oauth/token",
        content=b"grant_type=client_credentials",
        auth=(tenant.client_id, tenant.client_secret),
        headers={"Content-Type": "Application/X-WWW-Form-URLEncoded; Charset=UTF-8"},
    )
    assert shouted.status_code == 200, shouted.text
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
    assert claims["iat"] <= claims["nbf"] <= claims["iat"] + 1
    assert claims["scope"] == "ingest:write kpi:read"
    assert claims["jti"]
    other = jwt.decode(form.json()["access_token"], keys, algorithms=["RS256"]).claims
    assert other["jti"] != claims["jti"]
    assert other["scope"] == "kpi:read"


async def test_platform_admin_token_has_every_scope_and_a_null_tenant(
    http: httpx.AsyncClient, admin_token: str, stack: Stack
) -> None:
    keys = KeySet.import_key_set((await http.get("/.well-known/jwks.json")).json())
    claims = jwt.decode(admin_token, keys, algorithms=["RS256"]).claims
    assert set(claims["scope"].split()) == set(ALL_SCOPES)
    # CONTRACT §2 lists tenant among the claims: present, null.
    assert "tenant" in claims and claims["tenant"] is None
    assert claims["sub"] == stack.config.admin.client_id
    # And so the API document says of introspection's answer.
    document = (await http.get("/openapi.json")).json()
    answer = document["paths"]["/oauth/introspect"]["post"]["responses"]["200"]
    tenant = answer["content"]["application/json"]["schema"]["properties"]["tenant"]
    assert tenant["type"] == ["string", "null"]
    # Every service reads the null tenant as none: no tenant's data, and no fault.
    admin = {"Authorization": f"Bearer {admin_token}"}
    async with httpx.AsyncClient(timeout=30.0) as client:
        for service, method, path in (
            ("metrics", "GET", "/v1/kpis/catalog"),
            ("ingest", "POST", "/v1/events"),
            ("targets", "GET", "/v1/targets/plans"),
            ("gateway", "GET", "/v1/users"),
        ):
            body: dict[str, list[object]] | None = {"events": []} if method == "POST" else None
            refused = await client.request(
                method, stack.url(service) + path, json=body, headers=admin
            )
            assert refused.status_code == 403, (service, refused.text)
            assert refused.json()["detail"] == "this token acts for no tenant", service
    introspected = await http.post(
        "/oauth/introspect",
        data={"token": admin_token},
        auth=(stack.config.admin.client_id, stack.config.admin.client_secret),
    )
    assert introspected.json()["active"] is True and introspected.json()["tenant"] is None


async def test_token_errors_follow_rfc6749(http: httpx.AsyncClient, new_tenant: NewTenant) -> None:
    tenant = await new_tenant(scopes=["kpi:read"])
    wrong = await http.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(tenant.client_id, "not-the-secret"),
    )
    assert wrong.status_code == 401
    assert wrong.json()["error"] == "invalid_client"
    assert wrong.headers["www-authenticate"].startswith('Basic realm="lodestar"')
    # An unknown client gets the very same answer as a wrong secret: nothing to probe.
    unknown = await http.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "client_id": "nobody", "client_secret": "x"},
    )
    assert unknown.status_code == 401
    assert unknown.json() == wrong.json()
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
    repeated = await http.post(
        "/oauth/token",
        content=b"grant_type=client_credentials&scope=kpi:read&scope=kpi:read",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        auth=(tenant.client_id, tenant.client_secret),
    )
    assert repeated.status_code == 400
    assert repeated.json() == {
        "error": "invalid_request",
        "error_description": "parameters must not repeat: scope",
    }
    two_methods = await http.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "client_secret": tenant.client_secret},
        auth=(tenant.client_id, tenant.client_secret),
    )
    assert two_methods.status_code == 400
    assert two_methods.json()["error"] == "invalid_request"
    anonymous = await http.post("/oauth/token", data={"grant_type": "client_credentials"})
    assert anonymous.status_code == 401
    assert anonymous.json()["error"] == "invalid_client"
    # Every error answer is as uncacheable as a token.
    assert {r.headers["cache-control"] for r in (wrong, grant, scope, anonymous)} == {"no-store"}


async def test_metadata_and_jwks(http: httpx.AsyncClient, stack: Stack) -> None:
    metadata = (await http.get("/.well-known/oauth-authorization-server")).json()
    assert metadata["issuer"] == stack.gateway
    assert metadata["token_endpoint"] == f"{stack.gateway}/oauth/token"
    assert metadata["jwks_uri"] == f"{stack.gateway}/.well-known/jwks.json"
    assert "client_credentials" in metadata["grant_types_supported"]
    # RFC 8414 §2: only for JWT client authentication, which is not offered.
    assert "token_endpoint_auth_signing_alg_values_supported" not in metadata
    assert metadata["token_endpoint_auth_methods_supported"] == [
        "client_secret_basic",
        "client_secret_post",
        "none",
    ]
    assert set(metadata["scopes_supported"]) == {"openid", *ALL_SCOPES}
    assert metadata["response_types_supported"] == ["code"]
    openid = (await http.get("/.well-known/openid-configuration")).json()
    assert openid["issuer"] == stack.gateway
    assert openid["jwks_uri"] == metadata["jwks_uri"]
    assert openid["id_token_signing_alg_values_supported"] == ["RS256"]
    assert {"sub", "aud", "nonce", "auth_time"} <= set(openid["claims_supported"])
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


async def test_signing_key_creation_is_race_safe(fresh_database: FreshDatabase) -> None:
    url = await fresh_database("gateway")
    databases = [Database(url, "gateway") for _ in range(3)]

    async def start(db: Database) -> str:
        async with db.session() as session:
            return str((await load_signer(session)).current.kid)

    try:
        kids = await asyncio.gather(*(start(db) for db in databases))
        again = await start(databases[0])
    finally:
        for db in databases:
            await db.dispose()
    assert len(set(kids)) == 1 and again == kids[0]
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        assert await conn.fetchval("SELECT count(*) FROM gateway.signing_keys") == 1
    finally:
        await conn.close()


async def test_platform_admin_secret_change_replaces_the_old_one(
    stack: Stack, fresh_database: FreshDatabase
) -> None:
    # A database of its own: another admin id revokes the stack's admin client.
    own = {"database_url": await fresh_database("gateway")}
    client_id = f"rotating-admin-{secrets.token_hex(3)}"
    old, new = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    async with own_gateway(
        stack, admin_client_id=client_id, admin_client_secret=old, **own
    ) as gateway:
        assert await fetch_token(gateway, client_id, old)
    async with own_gateway(
        stack, admin_client_id=client_id, admin_client_secret=new, **own
    ) as gateway:
        refused = await gateway.post(
            "/oauth/token", data={"grant_type": "client_credentials"}, auth=(client_id, old)
        )
        assert refused.status_code == 401
        token = await fetch_token(gateway, client_id, new, scope="platform:admin")
        created = await gateway.post(
            "/v1/tenants",
            json={"name": "rotated", "reporting_currency": "EUR"},
            headers={"Authorization": f"Bearer {token}"},
        )
    assert created.status_code == 201


async def test_platform_admin_id_change_revokes_the_client_named_before(
    stack: Stack, fresh_database: FreshDatabase
) -> None:
    own = {"database_url": await fresh_database("gateway")}
    first, then = "ops-admin-1", "ops-admin-2"
    secret = secrets.token_urlsafe(24)

    async def reads(gateway: httpx.AsyncClient, token: str) -> int:
        answer = await gateway.get("/v1/tenants", headers={"Authorization": f"Bearer {token}"})
        return answer.status_code

    async with own_gateway(stack, admin_client_id=first, admin_client_secret=secret, **own) as gw:
        before = await fetch_token(gw, first, secret)
        assert await reads(gw, before) == 200
    async with own_gateway(stack, admin_client_id=then, admin_client_secret=secret, **own) as gw:
        refused = await gw.post(
            "/oauth/token", data={"grant_type": "client_credentials"}, auth=(first, secret)
        )
        assert refused.status_code == 401 and refused.json()["error"] == "invalid_client"
        # Its tokens go with it, not only its next ones.
        assert await reads(gw, before) == 401
        assert await reads(gw, await fetch_token(gw, then, secret)) == 200
    # Named again before its tokens expired, the first is active and the second goes,
    # but every token of the first stays refused until then: a token minted with its
    # old secret (maybe the one that leaked) cannot be told from a new one.
    async with own_gateway(stack, admin_client_id=first, admin_client_secret=secret, **own) as gw:
        assert await reads(gw, before) == 401
        assert await reads(gw, await fetch_token(gw, first, secret)) == 401
        gone = await gw.post(
            "/oauth/token", data={"grant_type": "client_credentials"}, auth=(then, secret)
        )
        assert gone.status_code == 401


def _basic(client_id: str, secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()}


async def test_basic_credentials_are_form_urlencoded(
    stack: Stack, fresh_database: FreshDatabase
) -> None:
    """RFC 6749 §2.3.1: id and secret are form-urlencoded, then Basic-encoded."""
    client_id = f"ops admin+{secrets.token_hex(3)}"
    secret = f"a+b c%/{secrets.token_urlsafe(12)}"
    form = {"grant_type": "client_credentials"}
    async with own_gateway(
        stack,
        admin_client_id=client_id,
        admin_client_secret=secret,
        database_url=await fresh_database("gateway"),
    ) as gateway:
        for encode in (quote_plus, lambda text: quote(text, safe="")):
            answer = await gateway.post(
                "/oauth/token", data=form, headers=_basic(encode(client_id), encode(secret))
            )
            assert answer.status_code == 200, answer.text
        # Sent raw, "+" reads as a space: another secret.
        raw = await gateway.post(
            "/oauth/token", data=form, headers=_basic(quote_plus(client_id), secret)
        )
        assert raw.status_code == 401 and raw.json()["error"] == "invalid_client"
        posted = await gateway.post(
            "/oauth/token", data={**form, "client_id": client_id, "client_secret": secret}
        )
        assert posted.status_code == 200, posted.text


def test_generated_credentials_read_the_same_raw_or_form_urlencoded() -> None:
    for _ in range(200):
        for credential in (new_client_id(), new_client_secret()):
            assert quote_plus(credential) == credential


async def test_basic_and_a_form_client_id_must_name_the_same_client(
    http: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    reader = await new_tenant(scopes=["kpi:read"])
    admin = await new_tenant(scopes=["tenant:admin"])
    basic = (reader.client_id, reader.client_secret)
    for other in (admin.client_id, "cl_nobody"):
        for scope in ({}, {"scope": "tenant:admin"}):
            form = {"grant_type": "client_credentials", "client_id": other, **scope}
            refused = await http.post("/oauth/token", data=form, auth=basic)
            assert refused.status_code == 400, refused.text
            assert refused.json() == {
                "error": "invalid_request",
                "error_description": "client_id names another client than the Basic credentials",
            }
    same = await http.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "client_id": reader.client_id},
        auth=basic,
    )
    assert same.status_code == 200 and same.json()["scope"] == "kpi:read"
    # An empty client_id names no client, as an empty secret is none.
    empty = await http.post(
        "/oauth/token", data={"grant_type": "client_credentials", "client_id": ""}, auth=basic
    )
    assert empty.status_code == 200, empty.text
    revoke = await http.post(
        "/oauth/revoke", data={"token": "x", "client_id": admin.client_id}, auth=basic
    )
    assert revoke.status_code == 400 and revoke.json()["error"] == "invalid_request"


def test_an_admin_secret_set_alone_is_the_default_clients(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    secret = "operator-chosen-secret-0123456789"
    monkeypatch.delenv("LODESTAR_ADMIN_CLIENT_ID", raising=False)
    monkeypatch.setenv("LODESTAR_ADMIN_CLIENT_SECRET", secret)
    settings = Settings()
    assert (settings.admin_client_id, settings.admin_client_secret) == ("lodestar-admin", secret)
    # The launcher (make run, the benchmarks) hands the services the very same pair.
    assert Launcher(tmp_path)._admin_credentials() == AdminCredentials("lodestar-admin", secret)
    monkeypatch.setenv("LODESTAR_ADMIN_CLIENT_ID", "ops-admin")
    assert Settings().admin_client_id == "ops-admin"
    assert Launcher(tmp_path)._admin_credentials() == AdminCredentials("ops-admin", secret)
    # The credentials file says what the banner says (CONTRACT §1), not a pair of before.
    written = json.loads((tmp_path / "dev-credentials.json").read_text())
    assert written == {"client_id": "ops-admin", "client_secret": secret}
    assert (tmp_path / "dev-credentials.json").stat().st_mode & 0o777 == 0o600
