"""The test session's servers: a real PostgreSQL, a real Kafka-protocol broker, and
the four services running in-process on free ports.

PostgreSQL and the broker come from ``DATABASE_URL`` / ``KAFKA_BOOTSTRAP_SERVERS``
when set, from testcontainers when ``LODESTAR_TEST_CONTAINERS=1`` and a Docker engine
answers, and otherwise from the same embedded code the launcher uses.

Tests stay independent by tenant: each creates its own tenant (and, for Kafka tests,
its own topics), because the services under test commit through their own sessions.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import ExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import uvicorn
from cryptography.fernet import Fernet
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

from devstack.embedded import (
    EmbeddedBroker,
    EmbeddedError,
    EmbeddedPostgres,
    free_port,
    free_ports,
)
from devstack.stack import SERVICES, AdminCredentials, StackConfig, service_settings
from shared.auth import KeyCache, TokenVerifier
from shared.db import asyncpg_dsn, with_database
from shared.events import DEADLETTER_TOPIC, all_event_topics
from shared.http_server import HttpProtocol
from shared.kafka import ensure_topics
from shared.migrations import upgrade
from shared.scopes import TENANT_SCOPES

pytest_plugins = ["tests.watchdog"]


def _docker_answers() -> bool:
    try:
        import docker

        docker.from_env().ping()
        return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def servers() -> Iterator[tuple[str, str]]:
    """(database server URL, bootstrap servers) for the whole session."""
    with ExitStack() as stack:
        database_url = os.environ.get("DATABASE_URL", "")
        bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "")
        use_containers = os.environ.get("LODESTAR_TEST_CONTAINERS") == "1" and _docker_answers()
        if use_containers and not (database_url and bootstrap):
            from testcontainers.kafka import KafkaContainer
            from testcontainers.postgres import PostgresContainer

            if not database_url:
                pg = stack.enter_context(PostgresContainer("postgres:18", driver=None))
                database_url = pg.get_connection_url()
            if not bootstrap:
                kafka = stack.enter_context(KafkaContainer().with_kraft())
                bootstrap = kafka.get_bootstrap_server()
        workdir = Path(tempfile.mkdtemp(prefix="lodestar-test-"))
        stack.callback(shutil.rmtree, workdir, True)
        if not database_url:
            pg_embedded = EmbeddedPostgres(workdir / "pg")
            database_url = pg_embedded.start()
            stack.callback(pg_embedded.stop)
        if not bootstrap:
            broker = EmbeddedBroker(free_port(), workdir / "tansu.log")
            bootstrap = broker.start()
            stack.callback(broker.stop)
        yield database_url, bootstrap


@pytest.fixture(scope="session")
def database_url(servers: tuple[str, str]) -> Iterator[str]:
    """A fresh database for this session, migrated to head for every service."""
    server_url, _ = servers
    name = f"lodestar_test_{secrets.token_hex(4)}"

    async def create() -> None:
        conn = await asyncpg.connect(asyncpg_dsn(with_database(server_url, "postgres")))
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    asyncio.run(create())
    url = with_database(server_url, name)
    for service in SERVICES:
        upgrade(service, url)
    yield url


FreshDatabase = Callable[..., Awaitable[str]]


@asynccontextmanager
async def schema_connection(url: str, schema: str) -> AsyncIterator[asyncpg.Connection]:
    """A plain connection to ``url`` with ``schema`` on its search path, closed after."""
    conn = await asyncpg.connect(asyncpg_dsn(url), server_settings={"search_path": schema})
    try:
        yield conn
    finally:
        await conn.close()


@pytest.fixture
def fresh_database(servers: tuple[str, str]) -> FreshDatabase:
    """A database of a test's own, migrated for the given services: for a service
    instance whose background work (relay, consumer) must not share tables with the stack."""

    async def create(*services: str) -> str:
        name = f"lodestar_own_{secrets.token_hex(4)}"
        conn = await asyncpg.connect(asyncpg_dsn(with_database(servers[0], "postgres")))
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        url = with_database(servers[0], name)
        for service in services:
            await asyncio.to_thread(upgrade, service, url)
        return url

    return create


@pytest.fixture(scope="session")
def metrics_database(servers: tuple[str, str]) -> str:
    """A database with only the metrics schema, for tests that drive its code directly."""
    name = f"lodestar_metrics_{secrets.token_hex(4)}"

    async def create() -> None:
        conn = await asyncpg.connect(asyncpg_dsn(with_database(servers[0], "postgres")))
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    asyncio.run(create())
    url = with_database(servers[0], name)
    upgrade("metrics", url)
    return url


@pytest.fixture(scope="session")
def kafka_bootstrap(servers: tuple[str, str]) -> str:
    return servers[1]


class _InProcessServer(uvicorn.Server):
    # pytest owns the process's signals; the services must not take them over.
    def install_signal_handlers(self) -> None:
        return None

    def capture_signals(self) -> Any:
        from contextlib import nullcontext

        return nullcontext()


@dataclass
class Stack:
    config: StackConfig
    # Each service's app, for tests that reach into a service's state.
    apps: dict[str, Any] = field(default_factory=dict)

    @property
    def gateway(self) -> str:
        return self.config.url("gateway")

    def url(self, service: str) -> str:
        return self.config.url(service)


@asynccontextmanager
async def serve_app(
    app: Any, host: str, port: int, http: type[HttpProtocol] = HttpProtocol
) -> AsyncIterator[None]:
    """Runs one ASGI app with uvicorn in this event loop until the block ends."""
    server = _InProcessServer(
        uvicorn.Config(app, host=host, port=port, log_config=None, lifespan="on", http=http)
    )
    task = asyncio.create_task(server.serve())
    for _ in range(400):
        if server.started or task.done():
            break
        await asyncio.sleep(0.05)
    if task.done() or not server.started:
        raise RuntimeError(f"app on port {port} did not start")
    try:
        yield
    finally:
        server.should_exit = True
        await task


@dataclass
class TokenMinter:
    """Signs access tokens with a test key, for testing one service without the gateway."""

    key: RSAKey
    issuer: str = "http://issuer.test"
    audience: str = "lodestar"

    def verifier(self) -> TokenVerifier:
        document = dict(KeySet([self.key]).as_dict(private=False))

        async def fetch(_: str) -> dict[str, Any]:
            return document

        return TokenVerifier(KeyCache("test://jwks", fetch=fetch), self.issuer, self.audience)

    def mint(
        self,
        tenant: str | None,
        /,
        scopes: list[str],
        header: dict[str, Any] | None = None,
        **claims: Any,
    ) -> str:
        now = int(time.time())
        body: dict[str, Any] = {
            "iss": self.issuer,
            "sub": "test-client",
            "aud": self.audience,
            "exp": now + 600,
            "iat": now,
            "jti": secrets.token_hex(8),
            "client_id": "test-client",
            "scope": " ".join(scopes),
        }
        if tenant is not None:
            body["tenant"] = tenant
        # Positional-only tenant: a test may still set the claim itself (tenant=None).
        body.update(claims)
        head = {"alg": "RS256", "typ": "at+jwt", "kid": self.key.kid, **(header or {})}
        return jwt.encode(head, body, self.key, algorithms=["RS256"])


@pytest.fixture
async def pg(stack: Stack) -> AsyncIterator[asyncpg.Connection]:
    """A plain connection to the stack's database, for reading any schema directly."""
    conn = await asyncpg.connect(asyncpg_dsn(stack.config.database_url))
    try:
        yield conn
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def minter() -> TokenMinter:
    return TokenMinter(RSAKey.generate_key(2048, parameters={"kid": "test-key"}))


@pytest.fixture(scope="session")
async def stack(database_url: str, kafka_bootstrap: str) -> AsyncIterator[Stack]:
    """All four services, started once per session on free ports."""
    import importlib

    prefix = f"t{secrets.token_hex(3)}."
    config = StackConfig(
        database_url=database_url,
        kafka_bootstrap_servers=kafka_bootstrap,
        admin=AdminCredentials("test-admin", secrets.token_urlsafe(24)),
        ports=dict(zip(SERVICES, free_ports(len(SERVICES)), strict=True)),
        topic_prefix=prefix,
        credentials_key=Fernet.generate_key().decode(),
        signing_keys_key=Fernet.generate_key().decode(),
    )
    await ensure_topics(kafka_bootstrap, [*all_event_topics(prefix), f"{prefix}{DEADLETTER_TOPIC}"])
    servers: list[tuple[uvicorn.Server, asyncio.Task[None]]] = []
    apps: dict[str, Any] = {}
    for service in SERVICES:
        app = importlib.import_module(f"services.{service}.app").create_app(
            service_settings(service, config)
        )
        apps[service] = app
        server = _InProcessServer(
            uvicorn.Config(
                app,
                host=config.host,
                port=config.ports[service],
                log_config=None,
                lifespan="on",
                http=HttpProtocol,
                # As the launcher runs it: no caller of the gateway is a proxy.
                proxy_headers=service != "gateway",
            )
        )
        task = asyncio.create_task(server.serve())
        servers.append((server, task))
        for _ in range(400):
            if server.started or task.done():
                break
            await asyncio.sleep(0.05)
        if task.done() or not server.started:
            raise RuntimeError(f"{service} did not start")
    # As the launcher does: metrics is ready once its consumer reads the event stream,
    # and a test's first push must not wait for its group to form.
    try:
        async with httpx.AsyncClient(timeout=5.0) as client:
            for service in SERVICES:
                deadline = time.monotonic() + 60
                url = f"{config.url(service)}/readyz"
                while (ready := await client.get(url)).status_code != 200:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"{service} was not ready: {ready.text}")
                    await asyncio.sleep(0.1)
        yield Stack(config, apps)
    finally:
        for running, _ in reversed(servers):
            running.should_exit = True
        await asyncio.gather(*(task for _, task in servers), return_exceptions=True)


@pytest.fixture
async def http(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=stack.gateway, timeout=30.0) as client:
        yield client


@dataclass
class TenantClient:
    """A tenant created for one test, with an OAuth client holding ``scopes``."""

    tenant_id: str
    client_id: str
    client_secret: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


async def fetch_token(
    http: httpx.AsyncClient, client_id: str, client_secret: str, scope: str | None = None
) -> str:
    form = {"grant_type": "client_credentials"}
    if scope:
        form["scope"] = scope
    response = await http.post("/oauth/token", data=form, auth=(client_id, client_secret))
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


ALL_TENANT_SCOPES = list(TENANT_SCOPES)


@pytest.fixture
async def admin_token(http: httpx.AsyncClient, stack: Stack) -> str:
    return await fetch_token(http, stack.config.admin.client_id, stack.config.admin.client_secret)


NewTenant = Callable[..., Awaitable[TenantClient]]


@pytest.fixture
async def new_tenant(http: httpx.AsyncClient, admin_token: str) -> NewTenant:
    """Creates a tenant and a client of it; ``scopes`` defaults to every tenant scope."""

    async def create(
        scopes: list[str] | None = None, reporting_currency: str = "USD", name: str | None = None
    ) -> TenantClient:
        auth = {"Authorization": f"Bearer {admin_token}"}
        response = await http.post(
            "/v1/tenants",
            json={
                "name": name or f"seller-{secrets.token_hex(3)}",
                "reporting_currency": reporting_currency,
            },
            headers=auth,
        )
        assert response.status_code == 201, response.text
        tenant_id = response.json()["id"]
        response = await http.post(
            f"/v1/tenants/{tenant_id}/clients",
            json={"name": "test client", "scopes": scopes or ALL_TENANT_SCOPES},
            headers=auth,
        )
        assert response.status_code == 201, response.text
        body = response.json()
        token = await fetch_token(http, body["client_id"], body["client_secret"])
        return TenantClient(tenant_id, body["client_id"], body["client_secret"], token)

    return create


async def broker_started_again(port: int, log: Path) -> EmbeddedBroker:
    """A new broker on the port of one just killed: the port is taken until the clients
    have closed their ends of the dead broker's connections, which takes a moment."""
    deadline = time.monotonic() + 20
    while True:
        broker = EmbeddedBroker(port, log)
        try:
            broker.start()
            return broker
        except EmbeddedError:
            if time.monotonic() > deadline:
                raise
        await asyncio.sleep(0.1)
