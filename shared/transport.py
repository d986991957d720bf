"""The HTTP/1.1 transport under every call between Lodestar's own services.

httpx's default transport (httpcore over anyio) spends most of a short internal call
in its connection pool: each request asks every pooled connection's socket whether it
is still good, through anyio's typed attributes. Between our services the calls are
small and plain HTTP/1.1 with keep-alive, so this transport keeps idle connections on
a stack, takes the most recently used one, and parses answers with httptools (the
parser uvicorn uses). Anything else, https above all (marketplaces, identity
providers), goes to httpx's own transport, unchanged.

Answers stream: a body is read from the socket as the caller iterates it, and the
connection goes back to the stack only once the whole answer was read.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httptools
import httpx

IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
READ_SIZE = 65536
MAX_IDLE_PER_HOST = 64


class _Closed(Exception):
    """The other side closed the connection before its answer was complete."""


@dataclass
class _Answer:
    """What httptools has parsed of one answer so far."""

    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    chunks: deque[bytes] = field(default_factory=deque)
    head_done: bool = False
    complete: bool = False
    keep_alive: bool = False
    parser: httptools.HttpResponseParser | None = None

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.head_done = True
        # Only known here: httptools resets it once the message is complete.
        self.keep_alive = self.parser is not None and self.parser.should_keep_alive()

    def on_body(self, body: bytes) -> None:
        self.chunks.append(bytes(body))

    def on_message_complete(self) -> None:
        self.complete = True


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.idle_since = time.monotonic()

    def close(self) -> None:
        self.writer.close()


def _timeout(request: httpx.Request, kind: str) -> float | None:
    value = request.extensions.get("timeout", {}).get(kind)
    return float(value) if value is not None else None


class _Body(httpx.AsyncByteStream):
    """An answer's body, read from its connection as it is consumed."""

    def __init__(
        self,
        transport: ServiceTransport,
        key: tuple[str, int],
        connection: _Connection,
        parser: httptools.HttpResponseParser,
        answer: _Answer,
        request: httpx.Request,
        ends_at_close: bool,
    ) -> None:
        self.transport = transport
        self.key = key
        self.connection: _Connection | None = connection
        self.parser = parser
        self.answer = answer
        self.request = request
        self.ends_at_close = ends_at_close

    async def __aiter__(self) -> AsyncIterator[bytes]:
        answer = self.answer
        while True:
            while answer.chunks:
                yield answer.chunks.popleft()
            if answer.complete or self.connection is None:
                return
            data = await _read(self.connection, self.request)
            if not data:
                if self.ends_at_close:
                    answer.complete = True
                    continue
                raise httpx.RemoteProtocolError(
                    "the service closed the connection mid-answer", request=self.request
                )
            _feed(self.parser, data, self.request)

    async def aclose(self) -> None:
        connection, self.connection = self.connection, None
        if connection is None:
            return
        if self.answer.complete and self.answer.keep_alive and not self.ends_at_close:
            self.transport.release(self.key, connection)
        else:
            connection.close()


async def _read(connection: _Connection, request: httpx.Request) -> bytes:
    try:
        async with asyncio.timeout(_timeout(request, "read")):
            return await connection.reader.read(READ_SIZE)
    except TimeoutError:
        connection.close()
        raise httpx.ReadTimeout("the service did not answer in time", request=request) from None
    except OSError as exc:
        connection.close()
        raise httpx.ReadError(str(exc), request=request) from None


def _feed(parser: httptools.HttpResponseParser, data: bytes, request: httpx.Request) -> None:
    try:
        parser.feed_data(data)
    except httptools.HttpParserError as exc:
        raise httpx.RemoteProtocolError(f"malformed answer: {exc}", request=request) from None


class ServiceTransport(httpx.AsyncBaseTransport):
    """Plain-HTTP calls on pooled keep-alive connections; others to ``fallback``."""

    def __init__(self, keepalive_seconds: float, fallback: httpx.AsyncBaseTransport) -> None:
        self.keepalive_seconds = keepalive_seconds
        self.fallback = fallback
        self._idle: dict[tuple[str, int], list[_Connection]] = {}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.scheme != "http":
            return await self.fallback.handle_async_request(request)
        body = b"".join([part async for part in request.stream])  # type: ignore[union-attr]
        message = _head(request, body) + body
        key = (request.url.host, request.url.port or 80)
        while True:
            connection, reused = await self._connection(key, request)
            try:
                return await self._exchange(key, connection, request, message)
            except _Closed:
                connection.close()
                # A kept-alive connection the service had just closed: the request never
                # reached it, so it is safe to send again on a new connection.
                if reused and request.method in IDEMPOTENT:
                    continue
                raise httpx.RemoteProtocolError(
                    "the service closed the connection without answering", request=request
                ) from None
            except BaseException:
                connection.close()
                raise

    async def _exchange(
        self,
        key: tuple[str, int],
        connection: _Connection,
        request: httpx.Request,
        message: bytes,
    ) -> httpx.Response:
        try:
            connection.writer.write(message)
            async with asyncio.timeout(_timeout(request, "write")):
                await connection.writer.drain()
        except TimeoutError:
            raise httpx.WriteTimeout("the service took too long to read", request=request) from None
        except OSError as exc:
            raise _Closed from exc
        answer = _Answer()
        parser = answer.parser = httptools.HttpResponseParser(answer)
        received = False
        while not answer.head_done:
            data = await _read(connection, request)
            if not data:
                if received:
                    raise httpx.RemoteProtocolError(
                        "the service closed the connection mid-answer", request=request
                    )
                raise _Closed
            received = True
            _feed(parser, data, request)
        if request.method == "HEAD":
            answer.complete = True
        names = {name.lower() for name, _ in answer.headers}
        ends_at_close = not answer.complete and not (
            b"content-length" in names or b"transfer-encoding" in names
        )
        stream = _Body(self, key, connection, parser, answer, request, ends_at_close)
        return httpx.Response(
            parser.get_status_code(),
            headers=answer.headers,
            stream=stream,
            extensions={"http_version": b"HTTP/1.1"},
        )

    async def _connection(
        self, key: tuple[str, int], request: httpx.Request
    ) -> tuple[_Connection, bool]:
        idle = self._idle.get(key)
        now = time.monotonic()
        while idle:
            connection = idle.pop()
            if now - connection.idle_since < self.keepalive_seconds and not (
                connection.reader.at_eof() or connection.writer.is_closing()
            ):
                return connection, True
            connection.close()
        try:
            async with asyncio.timeout(_timeout(request, "connect")):
                reader, writer = await asyncio.open_connection(*key)
        except TimeoutError:
            raise httpx.ConnectTimeout("no connection in time", request=request) from None
        except OSError as exc:
            raise httpx.ConnectError(str(exc), request=request) from None
        return _Connection(reader, writer), False

    def release(self, key: tuple[str, int], connection: _Connection) -> None:
        idle = self._idle.setdefault(key, [])
        if len(idle) >= MAX_IDLE_PER_HOST:
            connection.close()
            return
        connection.idle_since = time.monotonic()
        idle.append(connection)

    async def aclose(self) -> None:
        for idle in self._idle.values():
            for connection in idle:
                connection.close()
        self._idle.clear()
        await self.fallback.aclose()


def _head(request: httpx.Request, body: bytes) -> bytes:
    lines = [b"%s %s HTTP/1.1" % (request.method.encode(), request.url.raw_path)]
    has_length = False
    for name, value in request.headers.raw:
        lowered = name.lower()
        if lowered == b"transfer-encoding":
            continue  # the body is sent whole, with its length
        if lowered == b"content-length":
            has_length = True
        lines.append(name + b": " + value)
    if not has_length and (body or request.method in ("POST", "PUT", "PATCH")):
        lines.append(b"Content-Length: %d" % len(body))
    return b"\r\n".join(lines) + b"\r\n\r\n"
