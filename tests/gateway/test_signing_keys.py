"""Rotating the keys that sign tokens: published ahead, signing at their start, the old
ones retired once no token they signed is valid; at once when a key is feared leaked."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from unittest.mock import ANY

import asyncpg
import httpx
import pytest
from cryptography.fernet import Fernet
from pydantic_settings import BaseSettings

from devstack.embedded import free_port
from devstack.stack import service_settings
from services.gateway.app import create_app
from services.gateway.config import SIGNING_KEYS_KEY_VARIABLE
from services.gateway.config import Settings as GatewaySettings
from services.gateway.oauth.signing import PUBLISH_AHEAD, UnreadableSigningKeys, load_signer
from services.ingest.config import Settings as IngestSettings
from shared import auth
from shared.auth import KeyCache
from shared.db import Database, asyncpg_dsn
from shared.errors import Unauthenticated
from shared.revocations import REVOKED_TOKENS_PATH
from shared.sealing import SealedWithAnotherKey, Sealer
from shared.settings import InvalidSettings
from shared.time import utcnow
from tests.conftest import FreshDatabase, Stack, fetch_token, serve_app
from tests.gateway.login import header_of


@dataclass
class OwnGateway:
    http: httpx.AsyncClient
    app: Any
    pg: asyncpg.Connection
    client_id: str
    secret: str

    async def token(self) -> str:
        return await fetch_token(self.http, self.client_id, self.secret, scope="platform:admin")

    async def reads(self, token: str) -> int:
        answer = await self.http.get("/v1/tenants", headers={"Authorization": f"Bearer {token}"})
        return answer.status_code

    async def published(self) -> list[str]:
        return [k["kid"] for k in (await self.http.get("/.well-known/jwks.json")).json()["keys"]]

    async def move_start(self, kid: str, seconds_ago: int) -> None:
        """As if the key's start were ``seconds_ago`` behind, and the keys before it had
        started a day before that: no test waits for it."""
        await self.pg.execute(
            "UPDATE gateway.signing_keys SET signs_from = now() - make_interval(secs => $2)"
            " - CASE WHEN kid = $1 THEN interval '0' ELSE interval '1 day' END",
            kid,
            seconds_ago,
        )
        await self.app.state.key_reloader.reload()


@asynccontextmanager
async def own_gateway_on(
    stack: Stack, url: str, client_id: str, secret: str, **overrides: Any
) -> AsyncIterator[OwnGateway]:
    port = free_port()
    settings = service_settings("gateway", stack.config).model_copy(
        update={
            "port": port,
            "database_url": url,
            "admin_client_id": client_id,
            "admin_client_secret": secret,
            **overrides,
        }
    )
    app = create_app(settings)
    pg = await asyncpg.connect(asyncpg_dsn(url))
    try:
        async with (
            serve_app(app, "127.0.0.1", port),
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30.0) as http,
        ):
            yield OwnGateway(http, app, pg, client_id, secret)
    finally:
        await pg.close()


@pytest.fixture
async def gateway(stack: Stack, fresh_database: FreshDatabase) -> AsyncIterator[OwnGateway]:
    """A gateway on a database of its own: a rotation here ends no token of the stack's."""
    url = await fresh_database("gateway")
    client_id, secret = f"keys-admin-{secrets.token_hex(3)}", secrets.token_urlsafe(24)
    async with own_gateway_on(stack, url, client_id, secret) as gateway:
        yield gateway


async def stored_keys(pg: asyncpg.Connection) -> dict[str, dict[str, Any]]:
    rows = await pg.fetch("SELECT kid, private_jwk FROM gateway.signing_keys")
    return {row["kid"]: json.loads(row["private_jwk"]) for row in rows}


async def test_keys_are_stored_sealed_so_a_dump_signs_nothing(gateway: OwnGateway) -> None:
    admin = await gateway.token()
    bearer = {"Authorization": f"Bearer {admin}"}
    assert (await gateway.http.post("/v1/signing-keys", headers=bearer)).status_code == 201
    stored = await stored_keys(gateway.pg)
    assert len(stored) == 2
    for jwk in stored.values():
        # Nothing of the key but its Fernet token: no private (or public) member.
        assert set(jwk) == {"sealed"}
        assert jwk["sealed"].startswith("gAAAAA")
    assert await gateway.reads(admin) == 200


async def test_keys_stored_before_the_variable_was_set_are_sealed_at_the_next_start(
    stack: Stack, fresh_database: FreshDatabase
) -> None:
    url = await fresh_database("gateway")
    client_id, secret = f"keys-admin-{secrets.token_hex(3)}", secrets.token_urlsafe(24)
    async with own_gateway_on(stack, url, client_id, secret, signing_keys_key="") as plain:
        token = await plain.token()
        (kid, jwk), *_ = (await stored_keys(plain.pg)).items()
        assert "d" in jwk and "sealed" not in jwk

    key = Fernet.generate_key().decode()
    async with own_gateway_on(stack, url, client_id, secret, signing_keys_key=key) as sealed:
        assert await stored_keys(sealed.pg) == {kid: {"sealed": ANY}}
        # The same key signs on: a token from before still counts.
        assert await sealed.reads(token) == 200
        assert _kid(await sealed.token()) == kid

    # Sealed, the keys need the variable, and the very key that sealed them.
    database = Database(url, "gateway")
    try:
        for wrong in ("", Fernet.generate_key().decode()):
            async with database.session() as session:
                with pytest.raises(UnreadableSigningKeys, match=SIGNING_KEYS_KEY_VARIABLE):
                    await load_signer(session, Sealer(wrong, SIGNING_KEYS_KEY_VARIABLE))
        # Replacing that key: the new one first, the old one after, for one start.
        new = Fernet.generate_key().decode()
        async with database.session() as session:
            signer = await load_signer(session, Sealer(f"{new},{key}", SIGNING_KEYS_KEY_VARIABLE))
        assert str(signer.current.kid) == kid
        async with database.session() as session:
            signer = await load_signer(session, Sealer(new, SIGNING_KEYS_KEY_VARIABLE))
        assert str(signer.current.kid) == kid
        async with database.session() as session:
            with pytest.raises(UnreadableSigningKeys, match=SIGNING_KEYS_KEY_VARIABLE):
                await load_signer(session, Sealer(key, SIGNING_KEYS_KEY_VARIABLE))
    finally:
        await database.dispose()


async def test_replicas_replace_their_sealing_key_one_at_a_time(
    stack: Stack, fresh_database: FreshDatabase, caplog: pytest.LogCaptureFixture
) -> None:
    """A replica that starts with ``NEW,OLD`` seals the keys again under the new key
    while others still run: one that has the new key second opens them at its reload.
    One that lacks it signs on with the keys it read before (the same keys), saying
    so; but a key retired meanwhile, perhaps leaked, goes there too, and one it cannot
    open is neither published nor signed with."""
    url = await fresh_database("gateway")
    client_id, secret = f"keys-admin-{secrets.token_hex(3)}", secrets.token_urlsafe(24)
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    async with (
        own_gateway_on(stack, url, client_id, secret, signing_keys_key=old) as lacking,
        own_gateway_on(stack, url, client_id, secret, signing_keys_key=f"{old},{new}") as ready,
    ):
        before = await lacking.token()
        kid = _kid(before)
        async with own_gateway_on(
            stack, url, client_id, secret, signing_keys_key=f"{new},{old}"
        ) as replaced:
            with pytest.raises(SealedWithAnotherKey):
                Sealer(old, SIGNING_KEYS_KEY_VARIABLE).open(
                    (await stored_keys(replaced.pg))[kid]["sealed"].encode()
                )
            token = await replaced.token()
            await ready.app.state.key_reloader.reload()
            assert await ready.reads(token) == 200
            assert _kid(await ready.token()) == kid
            with caplog.at_level("WARNING", logger="services.gateway.oauth.signing"):
                await lacking.app.state.key_reloader.reload()
            assert f"token signing keys {kid} are sealed under a key of" in caplog.text
            assert await lacking.reads(token) == 200
            assert await replaced.reads(await lacking.token()) == 200

            # The key feared leaked is replaced at once by the replica that has the new key.
            bearer = {"Authorization": f"Bearer {token}"}
            rotated = await replaced.http.post(
                "/v1/signing-keys", json={"immediately": True}, headers=bearer
            )
            assert rotated.status_code == 201, rotated.text
            fresh = rotated.json()["kid"]
            caplog.clear()
            with caplog.at_level("ERROR", logger="services.gateway.oauth.signing"):
                await lacking.app.state.key_reloader.reload()
            assert f"token signing keys {fresh} cannot be opened" in caplog.text
            assert await lacking.reads(before) == 401
            assert fresh not in await lacking.published() and kid not in await lacking.published()
            refused = await lacking.http.post(
                "/oauth/token",
                data={"grant_type": "client_credentials", "scope": "platform:admin"},
                auth=(client_id, secret),
            )
            assert refused.status_code == 503
            assert SIGNING_KEYS_KEY_VARIABLE in refused.text
            await ready.app.state.key_reloader.reload()
            assert _kid(await ready.token()) == fresh


@pytest.mark.parametrize(
    ("settings", "variable"),
    [
        (GatewaySettings, "LODESTAR_GATEWAY_SIGNING_KEYS_KEY"),
        (IngestSettings, "LODESTAR_INGEST_CREDENTIALS_KEY"),
    ],
)
def test_a_key_that_is_no_fernet_key_is_refused_naming_its_variable(
    settings: type[BaseSettings], variable: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(variable, "not-a-key")
    with pytest.raises(InvalidSettings, match=f"{variable}: the 1st key must be a Fernet key"):
        settings()
    monkeypatch.setenv(variable, Fernet.generate_key().decode())
    settings()


@pytest.mark.parametrize(
    ("settings", "variable"),
    [
        (GatewaySettings, "LODESTAR_GATEWAY_SIGNING_KEYS_KEY"),
        (IngestSettings, "LODESTAR_INGEST_CREDENTIALS_KEY"),
    ],
)
def test_a_mistyped_key_is_refused_without_showing_any_of_it(
    settings: type[BaseSettings], variable: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The refusal ends up in logs: a key one character away from the real one, or the
    old key beside a bad new one, is as good as the key itself."""
    new, old = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    mistyped = new[:20] + "!" + new[21:]
    monkeypatch.setenv(variable, f"{mistyped},{old}")
    with pytest.raises(InvalidSettings) as refused:
        settings()
    message = str(refused.value)
    assert f"{variable}: the 1st key must be a Fernet key" in message
    for secret in (new[:12], new[-12:], old[:12], old[-12:]):
        assert secret not in message
    monkeypatch.setenv(variable, f"{new},{old[:-3]}")
    with pytest.raises(InvalidSettings, match=f"{variable}: the 2nd key must be"):
        settings()


async def test_a_rotated_key_is_published_first_then_signs_then_retires_the_old(
    gateway: OwnGateway,
) -> None:
    admin = await gateway.token()
    bearer = {"Authorization": f"Bearer {admin}"}
    listed = (await gateway.http.get("/v1/signing-keys", headers=bearer)).json()["keys"]
    assert [k["signing"] for k in listed] == [True]
    old_kid = listed[0]["kid"]
    assert await gateway.published() == [old_kid]

    rotated = await gateway.http.post("/v1/signing-keys", json={}, headers=bearer)
    assert rotated.status_code == 201, rotated.text
    new = rotated.json()
    assert new["signing"] is False
    ahead = utcnow() + PUBLISH_AHEAD - datetime.fromisoformat(new["signs_from"])
    assert abs(ahead.total_seconds()) < 60
    # Published at once, so caches know it before it signs; tokens are the old key's.
    assert await gateway.published() == [new["kid"], old_kid]
    before = await gateway.token()
    assert _kid(before) == old_kid

    # Its start come, it signs; the old key's tokens still count.
    await gateway.move_start(new["kid"], 60)
    after = await gateway.token()
    assert _kid(after) == new["kid"]
    assert await gateway.reads(before) == await gateway.reads(after) == 200
    listed = (await gateway.http.get("/v1/signing-keys", headers=bearer)).json()["keys"]
    assert [(k["kid"], k["signing"]) for k in listed] == [(new["kid"], True), (old_kid, False)]

    # Once it has signed for longer than a token lives, the old key goes.
    await gateway.move_start(new["kid"], 2 * 3600)
    assert await gateway.published() == [new["kid"]]
    assert await gateway.reads(before) == 401
    assert await gateway.reads(after) == 200


async def test_a_key_feared_leaked_is_replaced_at_once(gateway: OwnGateway) -> None:
    admin = await gateway.token()
    bearer = {"Authorization": f"Bearer {admin}"}
    pending = await gateway.http.post("/v1/signing-keys", headers=bearer)
    assert pending.status_code == 201
    replaced = await gateway.http.post(
        "/v1/signing-keys", json={"immediately": True}, headers=bearer
    )
    assert replaced.status_code == 201, replaced.text
    assert replaced.json()["signing"] is True
    # Every token signed before is refused at once, the pending key is gone too.
    assert await gateway.reads(admin) == 401
    assert await gateway.published() == [replaced.json()["kid"]]
    # The services, which read the revoked tokens every second, learn it with them.
    listed = (await gateway.http.get(REVOKED_TOKENS_PATH)).json()
    assert listed["signing_keys"] == [replaced.json()["kid"]]
    fresh = await gateway.token()
    assert _kid(fresh) == replaced.json()["kid"] and await gateway.reads(fresh) == 200


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"immediately": "soon"}, "immediately"),
        ({"now": True}, "now"),
        # Ending every token of the platform takes JSON true, not what reads like it.
        *(({"immediately": loose}, "immediately") for loose in ("yes", "true", 1, "on")),
    ],
)
async def test_a_rotation_asked_wrongly_is_refused_naming_the_field(
    gateway: OwnGateway, body: dict[str, Any], field: str
) -> None:
    bearer = {"Authorization": f"Bearer {await gateway.token()}"}
    refused = await gateway.http.post("/v1/signing-keys", json=body, headers=bearer)
    assert refused.status_code == 422
    assert [e["field"] for e in refused.json()["errors"]] == [field]
    assert len(await gateway.published()) == 1


def _kid(token: str) -> str:
    return str(header_of(token)["kid"])


async def test_a_service_asks_for_keys_again_after_their_max_age(
    monkeypatch: pytest.MonkeyPatch, stack: Stack
) -> None:
    """A key the gateway retired stops counting at a service within the JWKS max-age;
    a gateway out of reach leaves the keys held."""
    documents: list[dict[str, Any]] = [
        (await httpx.AsyncClient().get(f"{stack.gateway}/.well-known/jwks.json")).json()
    ]
    kid = documents[0]["keys"][0]["kid"]
    fetches = 0

    async def fetch(_: str) -> dict[str, Any]:
        nonlocal fetches
        fetches += 1
        if not documents:
            raise httpx.ConnectError("gateway down")
        return documents[-1]

    clock = [time.monotonic()]
    monkeypatch.setattr(auth.time, "monotonic", lambda: clock[0])
    cache = KeyCache("http://gateway/.well-known/jwks.json", fetch=fetch)
    assert (await cache.key_for(kid)).kid == kid and fetches == 1
    clock[0] += 60
    await cache.key_for(kid)
    assert fetches == 1
    # Past the max-age with the gateway down: the key held still counts, asked again later.
    documents.clear()
    clock[0] += auth.KEYS_MAX_AGE_SECONDS
    assert (await cache.key_for(kid)).kid == kid and fetches == 2
    await cache.key_for(kid)
    assert fetches == 2
    # Back, with the key retired: refused.
    documents.append({"keys": []})
    clock[0] += auth.KEYS_RETRY_SECONDS + 1
    with pytest.raises(Unauthenticated):
        await cache.key_for(kid)
    assert fetches == 3
    # A set that is no JWKS is the keys being unavailable: a 401, never a 500.
    documents.append({"keys": [{"kty": "RSA", "kid": kid}]})
    clock[0] += auth.MIN_SECONDS_BETWEEN_JWKS_FETCHES + 1
    with pytest.raises(Unauthenticated, match="unavailable"):
        await cache.key_for(kid)
