"""Exceptions no handler takes, as every service's app (``build_app``) answers them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import httpx
import pytest
from fastapi import Request
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from devstack.embedded import free_port
from shared import service
from shared.service import build_app
from shared.settings import ServiceSettings
from tests.conftest import serve_app

TRACE = "0af7651916cd43dd8448eb211c80319c"


class SerializationFailure(Exception):
    """What SQLAlchemy's asyncpg adapter wraps: the driver's error with its SQLSTATE."""

    sqlstate = "40001"


class TooManyConnections(Exception):
    sqlstate = "53300"


class DiskFull(Exception):
    sqlstate = "53100"


def over(error: BaseException, context: BaseException) -> BaseException:
    """``error`` as raised while ``context`` was being handled."""
    error.__context__ = context
    return error


# How a database that cannot take the request now shows, depending on where it is met.
DATABASE_AWAY: dict[str, BaseException] = {
    "down": ConnectionRefusedError(111, "Connect call failed"),
    "frozen": TimeoutError(),
    "starting": asyncpg.exceptions.CannotConnectNowError("the database system is starting up"),
    "stopping": asyncpg.exceptions.AdminShutdownError("terminating connection"),
    "full": DBAPIError("SELECT 1", {}, TooManyConnections("too many clients already")),
    "pool": PoolTimeout("QueuePool limit of size 20 overflow 0 reached"),
    # A pooled connection left mid-operation when the server died.
    "crashed": asyncpg.exceptions.InternalClientError(
        "cannot switch to state 15; another operation (2) is in progress"
    ),
    "closed": asyncpg.exceptions.ConnectionDoesNotExistError(
        "connection was closed in the middle of operation"
    ),
    "crashed in a session": DBAPIError(
        "SELECT 1", {}, asyncpg.exceptions.InternalClientError("cannot switch to state 15")
    ),
    # Leaving a transaction's block raised anew over the connection lost in it.
    "closed in a transaction": over(
        asyncpg.InterfaceError(
            "cannot call Transaction.__aexit__(): the underlying connection is closed"
        ),
        asyncpg.exceptions.ConnectionDoesNotExistError(
            "connection was closed in the middle of operation"
        ),
    ),
}
# A driver's refusal of a statement of ours, whatever it was handling, is a fault.
OUR_FAULTS: dict[str, BaseException] = {
    "misused": asyncpg.InterfaceError("cannot use Connection.transaction() in a manually"),
    "misused while handling": over(
        asyncpg.InterfaceError("cannot use Connection.transaction() in a manually"),
        ValueError("a fault of ours"),
    ),
}


def failing_app() -> tuple[object, list[int]]:
    app = build_app("errors-test", ServiceSettings.model_validate({}))
    ports: list[int] = []

    @app.get("/boom")
    async def boom(request: Request) -> None:
        assert request.client is not None
        ports.append(request.client.port)
        raise RuntimeError("a fault of ours")

    @app.get("/deadlock")
    async def deadlock() -> None:
        raise asyncpg.exceptions.DeadlockDetectedError("deadlock detected")

    @app.get("/serialization")
    async def serialization() -> None:
        raise DBAPIError("UPDATE t SET x = 1", {}, SerializationFailure("could not serialize"))

    @app.get("/database/{how}")
    async def database_away(how: str) -> None:
        raise DATABASE_AWAY[how]

    @app.get("/fault/{how}")
    async def our_fault(how: str) -> None:
        raise OUR_FAULTS[how]

    @app.get("/disk-full")
    async def disk_full() -> None:
        raise DBAPIError("INSERT", {}, DiskFull("could not extend file: No space left on device"))

    @app.get("/port")
    async def port(request: Request) -> dict[str, int]:
        assert request.client is not None
        return {"port": request.client.port}

    return app, ports


@asynccontextmanager
async def failing_app_client() -> AsyncIterator[httpx.AsyncClient]:
    app, _ = failing_app()
    port = free_port()
    async with (
        serve_app(app, "127.0.0.1", port),
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client,
    ):
        yield client


async def test_a_fault_is_a_500_naming_its_trace_and_keeps_the_connection() -> None:
    app, ports = failing_app()
    port = free_port()
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    async with (
        serve_app(app, "127.0.0.1", port),
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", limits=limits) as client,
    ):
        answer = await client.get(
            "/boom", headers={"traceparent": f"00-{TRACE}-b7ad6b7169203331-01"}
        )
        assert answer.status_code == 500
        assert answer.json() == {"error": "internal", "detail": "internal error", "trace_id": TRACE}
        assert "connection" not in answer.headers or answer.headers["connection"] != "close"
        # The next request travels on the same connection: it was not closed.
        after = await client.get("/port")
        assert after.status_code == 200 and after.json()["port"] == ports[0]


async def test_a_transaction_rolled_back_for_a_concurrent_one_is_a_503_to_retry() -> None:
    async with failing_app_client() as client:
        for path in ("/deadlock", "/serialization"):
            answer = await client.get(path)
            assert answer.status_code == 503, (path, answer.text)
            assert answer.headers["retry-after"] == "1"
            assert answer.json()["error"] == "unavailable"
            assert "send it again" in answer.json()["detail"]


async def test_a_database_that_cannot_take_the_request_now_is_a_503_to_retry() -> None:
    async with failing_app_client() as client:
        for how in OUR_FAULTS:
            fault = await client.get(f"/fault/{how}")
            assert fault.status_code == 500, (how, fault.text)
        for how in DATABASE_AWAY:
            answer = await client.get(f"/database/{how}")
            assert answer.status_code == 503, (how, answer.text)
            assert answer.headers["retry-after"] == "1"
            assert answer.json() == {
                "error": "unavailable",
                "detail": "the database is not answering just now; send the request again "
                "in a moment",
            }


async def test_a_database_out_of_disk_says_so_and_to_wait_for_an_operator(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """It answered: "in a moment" would send ERPs back every second for hours."""
    # This process's other apps (the test session's stack) must not hear of it.
    monkeypatch.setattr(service, "_out_of_room_at", {})
    async with failing_app_client() as client:
        answer = await client.get("/disk-full")
        # The database still answers a read: readiness says writes fail.
        ready = await client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["checks"]["database"].startswith("refusing writes: out of disk space (")
    assert answer.status_code == 503
    assert answer.headers["retry-after"] == "60"
    assert answer.json() == {
        "error": "unavailable",
        "detail": "the database is out of disk space; nothing of the request was kept: "
        "send it again once an operator has made room",
    }
