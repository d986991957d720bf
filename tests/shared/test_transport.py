"""The transport between services: keep-alive, streaming, stale connections, errors."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import Response, StreamingResponse

from devstack.embedded import free_port
from shared.http import make_client
from shared.transport import ServiceTransport
from tests.conftest import serve_app
from tests.unreachable import refusing_port

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def echo_app() -> FastAPI:
    app = FastAPI()

    @app.api_route("/echo", methods=["GET", "POST", "PUT", "HEAD"])
    async def echo(request: Request) -> Response:
        body = await request.body()
        peer = request.client.port if request.client else 0
        return Response(
            body,
            status_code=201 if request.method == "POST" else 200,
            headers={
                "x-method": request.method,
                "x-query": request.url.query,
                "x-peer": str(peer),
                "x-trace": request.headers.get("traceparent", ""),
            },
        )

    @app.get("/big")
    async def big() -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            for i in range(80):
                yield bytes([i % 256]) * 65536

        return StreamingResponse(chunks())

    return app


@asynccontextmanager
async def raw_server(handler: Handler) -> AsyncIterator[str]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()


async def read_request(reader: asyncio.StreamReader) -> bytes:
    return await reader.readuntil(b"\r\n\r\n")


@pytest.fixture
async def echo() -> AsyncIterator[str]:
    port = free_port()
    async with serve_app(echo_app(), "127.0.0.1", port):
        yield f"http://127.0.0.1:{port}"


async def test_calls_keep_their_connection_and_carry_everything(echo: str) -> None:
    async with make_client(5.0, base_url=echo) as client:
        first = await client.get("/echo", params={"a": "1", "b": "x y"})
        posted = await client.post("/echo", json={"k": "v"})
        put = await client.put("/echo", content=b"raw")
        head = await client.head("/echo")
    assert first.status_code == 200 and first.headers["x-query"] == "a=1&b=x+y"
    assert first.headers["x-trace"] == "" or first.headers["x-trace"].startswith("00-")
    assert posted.status_code == 201 and posted.json() == {"k": "v"}
    assert put.content == b"raw" and head.status_code == 200 and head.content == b""
    # One connection for all four calls.
    assert len({r.headers["x-peer"] for r in (first, posted, put, head)}) == 1


async def test_a_big_answer_streams_and_the_connection_is_reused_after(echo: str) -> None:
    async with make_client(5.0, base_url=echo) as client:
        received = 0
        async with client.stream("GET", "/big") as response:
            async for chunk in response.aiter_bytes():
                received += len(chunk)
        assert received == 80 * 65536
        assert (await client.get("/echo")).status_code == 200


async def test_concurrent_calls_each_get_a_connection(echo: str) -> None:
    async with make_client(5.0, base_url=echo) as client:
        answers = await asyncio.gather(
            *(client.post("/echo", content=str(i).encode()) for i in range(50))
        )
    assert [a.content for a in answers] == [str(i).encode() for i in range(50)]


def answering_once_per_connection(answered: list[bytes]) -> Handler:
    """A server that answers the first request of a connection and drops the second
    unanswered: a kept-alive connection closed just as a request is sent on it."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await read_request(reader)
        answered.append(request.split(b" ")[0])
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        with suppress(asyncio.IncompleteReadError):
            await read_request(reader)
        writer.close()

    return handle


async def test_a_get_on_a_connection_the_service_dropped_is_sent_again() -> None:
    answered: list[bytes] = []
    async with (
        raw_server(answering_once_per_connection(answered)) as url,
        make_client(5.0, base_url=url) as client,
    ):
        assert (await client.get("/")).content == b"ok"
        assert (await client.get("/")).content == b"ok"
    assert answered == [b"GET", b"GET"]


async def test_a_post_on_a_dropped_connection_is_not_sent_twice() -> None:
    answered: list[bytes] = []
    async with (
        raw_server(answering_once_per_connection(answered)) as url,
        make_client(5.0, base_url=url) as client,
    ):
        assert (await client.post("/", content=b"1")).content == b"ok"
        with pytest.raises(httpx.RemoteProtocolError):
            await client.post("/", content=b"2")
    assert answered == [b"POST"]


async def test_an_answer_that_ends_with_the_connection_is_whole() -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall of it")
        await writer.drain()
        writer.close()

    async with raw_server(handle) as url, make_client(5.0, base_url=url) as client:
        assert (await client.get("/")).content == b"all of it"
        assert (await client.get("/")).content == b"all of it"


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (b"NOT HTTP AT ALL\r\n\r\n", httpx.RemoteProtocolError),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", httpx.RemoteProtocolError),
        (b"", httpx.RemoteProtocolError),
        (None, httpx.ReadTimeout),
    ],
)
async def test_broken_answers_are_httpx_errors(reply: bytes | None, error: type[Exception]) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        if reply is None:
            await asyncio.sleep(2)
        else:
            writer.write(reply)
            await writer.drain()
        writer.close()

    async with raw_server(handle) as url, make_client(0.5, base_url=url) as client:
        with pytest.raises(error):
            await client.get("/")


async def test_no_service_listening_is_a_connect_error() -> None:
    with refusing_port() as down:
        async with make_client(5.0) as client:
            with pytest.raises(httpx.ConnectError):
                await client.get(f"http://127.0.0.1:{down}/")


async def test_https_and_other_schemes_go_to_the_fallback() -> None:
    seen: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(200, text="from fallback")

    transport = ServiceTransport(2.0, httpx.MockTransport(answer))
    async with httpx.AsyncClient(transport=transport) as client:
        response = await client.get("https://api.example.com/orders?page=2")
    assert response.text == "from fallback"
    assert seen == ["https://api.example.com/orders?page=2"]
