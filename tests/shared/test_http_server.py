"""The services' HTTP protocol: a request's head has a time limit, and what uvicorn
refuses itself is answered in the contract's error body."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import orjson
from fastapi import FastAPI, Request

from devstack.embedded import free_port
from shared.http_server import HttpProtocol
from tests.conftest import Stack, serve_app
from tests.shared.test_limits import limited_app


class QuickHead(HttpProtocol):
    head_seconds = 0.5


def slow_app() -> FastAPI:
    app = FastAPI()

    @app.get("/slow")
    async def slow() -> dict[str, bool]:
        await asyncio.sleep(1.0)
        return {"slow": True}

    @app.get("/fast")
    async def fast() -> dict[str, bool]:
        return {"fast": True}

    return app


@asynccontextmanager
async def connection(port: int) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        yield reader, writer
    finally:
        writer.close()


async def one_answer(reader: asyncio.StreamReader) -> bytes:
    """One answer of a connection that stays open: its head, and its body by length."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    return head + await reader.readexactly(length)


def parsed(answer: bytes) -> tuple[str, dict[str, str], object]:
    head, _, body = answer.partition(b"\r\n\r\n")
    status, *lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return status, headers, orjson.loads(body)


async def test_what_is_not_http_is_a_400_in_the_error_body(stack: Stack) -> None:
    port = stack.config.ports["gateway"]
    for sent in (b"NOT HTTP AT ALL\r\n\r\n", b"GET / HTTP/1.1\r\nBad Header\r\n\r\n"):
        async with connection(port) as (reader, writer):
            writer.write(sent)
            # Answered, and closed: what else the connection sent cannot be read.
            answer = await asyncio.wait_for(reader.read(), 10)
        status, headers, body = parsed(answer)
        assert status == "HTTP/1.1 400 Bad Request", answer
        assert headers["content-type"] == "application/json"
        assert headers["connection"] == "close"
        # As every answer: no browser sniffs it or frames it.
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["x-frame-options"] == "DENY"
        assert body == {
            "error": "bad_request",
            "detail": "the request is not valid HTTP/1.1",
            "errors": [
                {
                    "field": "request",
                    "reason": "its request line or headers cannot be read as HTTP/1.1",
                }
            ],
        }


async def test_a_head_that_does_not_arrive_in_time_is_a_408_and_frees_the_connection() -> None:
    port = free_port()
    async with serve_app(slow_app(), "127.0.0.1", port, http=QuickHead):
        for sent in (b"", b"GET /fast HTTP/1.1\r\nHost: x\r\nX-Slow: "):
            async with connection(port) as (reader, writer):
                # Nothing at all, or a head that stops short: the same.
                writer.write(sent)
                answer = await asyncio.wait_for(reader.read(), 5)
            status, headers, body = parsed(answer)
            assert status == "HTTP/1.1 408 Request Timeout", answer
            assert headers["connection"] == "close"
            assert headers["x-content-type-options"] == "nosniff"
            assert body == {
                "error": "request_timeout",
                "detail": "the request's line and headers did not arrive in time",
                "errors": [
                    {"field": "request", "reason": "its line and headers must arrive within 0.5 s"}
                ],
            }
        # A head that arrives in time is answered, however long its answer takes.
        async with connection(port) as (reader, writer):
            writer.write(b"GET /slow HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            status, _, body = parsed(await asyncio.wait_for(reader.read(), 5))
        assert status == "HTTP/1.1 200 OK" and body == {"slow": True}


async def test_a_late_pipelined_head_ends_the_connection_after_the_answer_before_it() -> None:
    port = free_port()
    async with serve_app(slow_app(), "127.0.0.1", port, http=QuickHead):
        async with connection(port) as (reader, writer):
            # The second request's head stops short while the first is answered.
            writer.write(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\nGET /fast HTTP/1.1\r\nHo")
            answer = await asyncio.wait_for(reader.read(), 5)
        # The first answer whole, and the connection closed after it: no 408 cut into it.
        status, headers, body = parsed(answer)
        assert status == "HTTP/1.1 200 OK" and body == {"slow": True}, answer
        assert headers["connection"] == "close"


async def test_a_body_refused_unread_ends_its_connection(stack: Stack) -> None:
    """After a 413 from the declared length the server read and threw away all that was
    declared (13 GB in 8 s), for as long as the client sent: the connection now ends."""
    port = stack.config.ports["gateway"]
    async with connection(port) as (reader, writer):
        writer.write(
            b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000000000000\r\n\r\n" + b" " * 65536
        )
        answer = await asyncio.wait_for(reader.read(), 10)
    status, headers, body = parsed(answer)
    assert status == "HTTP/1.1 413 Request Entity Too Large", answer
    assert headers["connection"] == "close"
    assert isinstance(body, dict) and body["error"] == "payload_too_large"


async def test_an_http_1_1_request_names_its_host_and_a_1_0_client_gets_no_100() -> None:
    port = free_port()
    app, _, _ = limited_app(rate_limit_per_second=0)
    async with serve_app(app, "127.0.0.1", port):
        async with connection(port) as (reader, writer):
            writer.write(b"GET /healthz HTTP/1.1\r\n\r\n")
            status, _, body = parsed(await asyncio.wait_for(one_answer(reader), 5))
        assert status == "HTTP/1.1 400 Bad Request"
        assert body == {
            "error": "bad_request",
            "detail": "an HTTP/1.1 request must name its host",
            "errors": [{"field": "header.Host", "reason": "required in HTTP/1.1"}],
        }
        # HTTP/1.0 needs none; its Expect is ignored: the answer comes, no 100 first.
        async with connection(port) as (reader, writer):
            writer.write(
                b"POST /echo HTTP/1.0\r\nContent-Type: application/json\r\n"
                b"Content-Length: 2\r\nExpect: 100-continue\r\n\r\n{}"
            )
            answer = await asyncio.wait_for(reader.read(), 5)
        assert answer.startswith(b"HTTP/1.1 200 OK\r\n"), answer
        assert b"100 Continue" not in answer


async def test_a_chunked_bodys_trailer_fields_are_no_headers() -> None:
    """A token sent after the last chunk authenticated the request: a proxy in front,
    reading the head, saw none (RFC 9110 §6.5.1: a trailer is not merged into it)."""
    app = FastAPI()

    @app.post("/headers")
    async def headers_seen(request: Request) -> dict[str, object]:
        return {"headers": sorted(request.headers), "body": (await request.body()).decode()}

    port = free_port()
    async with serve_app(app, "127.0.0.1", port), connection(port) as (reader, writer):
        writer.write(
            b"POST /headers HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"2\r\n{}\r\n0\r\nAuthorization: Bearer stolen\r\nX-Late: 1\r\n\r\n"
            # The next request of the connection has its head read as ever.
            b"POST /headers HTTP/1.1\r\nHost: x\r\nX-Next: 1\r\nContent-Length: 0\r\n\r\n"
        )
        first = parsed(await asyncio.wait_for(one_answer(reader), 5))
        second = parsed(await asyncio.wait_for(one_answer(reader), 5))
    assert first[0] == "HTTP/1.1 200 OK"
    assert first[2] == {"headers": ["host", "transfer-encoding"], "body": "{}"}
    assert second[2] == {"headers": ["content-length", "host", "x-next"], "body": ""}
