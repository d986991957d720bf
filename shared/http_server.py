"""The services' HTTP/1.1 protocol for uvicorn (``--http shared.http_server:HttpProtocol``):
its httptools protocol, with a time limit on a request's head, and the refusals it
makes itself in the contract's error body.

Uvicorn limits the idle time between two requests of a connection (keep-alive), but not
the time a request's line and headers take to arrive: a connection that sends nothing,
or a header a byte at a time, was held for ever, and enough of them exhaust the
server's file descriptors. The body has its deadline in ``shared.limits``.
"""

from __future__ import annotations

import asyncio

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from shared.errors import BadRequest, FieldError, LodestarError, RequestTimeout
from shared.service import SECURITY_HEADERS

# What uvicorn's ``--http`` takes to run it.
HTTP_PROTOCOL = "shared.http_server:HttpProtocol"
# Apache's RequestReadTimeout gives a head 20 s at first; nginx's client_header_timeout
# 60 s. A client of ours sends its head at once.
HEAD_SECONDS = 20.0

NOT_HTTP = BadRequest(
    "the request is not valid HTTP/1.1",
    [FieldError("request", "its request line or headers cannot be read as HTTP/1.1")],
)


class HttpProtocol(HttpToolsProtocol):
    head_seconds = HEAD_SECONDS
    head_timer: asyncio.TimerHandle | None = None
    # httptools reports a chunked body's trailer fields as headers, and uvicorn added
    # them to the request's: a token sent after the last chunk authenticated a request
    # that a proxy in front had seen without one. They are dropped (RFC 9110 §6.5.1
    # lets a recipient discard them; none that we read may come there).
    head_read = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._await_head()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.head_read = False
        self._await_head()

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self.head_read:
            super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self.head_read = True
        self._head_arrived()
        if self.parser.get_http_version() == "1.0":
            # RFC 9110 §10.1.1: an HTTP/1.0 client's Expect is ignored, and no 1xx is
            # sent to it, which it cannot read.
            self.expect_100_continue = False
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._head_arrived()
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        self._refuse(NOT_HTTP)

    def _await_head(self) -> None:
        self._head_arrived()
        self.head_timer = self.loop.call_later(self.head_seconds, self._head_too_slow)

    def _head_arrived(self) -> None:
        if self.head_timer is not None:
            self.head_timer.cancel()
            self.head_timer = None

    def _head_too_slow(self) -> None:
        self.head_timer = None
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            # A pipelined request's head is late while the one before it is answered:
            # that answer is the connection's last, rather than cut short.
            self.cycle.keep_alive = False
            return
        self._refuse(
            RequestTimeout(
                "the request's line and headers did not arrive in time",
                [
                    FieldError(
                        "request",
                        f"its line and headers must arrive within {self.head_seconds:g} s",
                    )
                ],
            )
        )

    def _refuse(self, error: LodestarError) -> None:
        """Answers ``error`` and closes: what else the connection sent cannot be read."""
        body = orjson.dumps(error.body())
        head = [f"HTTP/1.1 {error.status} {_REASONS[error.status]}\r\n".encode()]
        head += [
            name + b": " + value + b"\r\n"
            for name, value in (*self.server_state.default_headers, *SECURITY_HEADERS)
        ]
        head += [
            b"content-type: application/json\r\n",
            b"content-length: %d\r\n" % len(body),
            b"connection: close\r\n\r\n",
        ]
        self.transport.write(b"".join(head) + body)
        self.transport.close()


_REASONS = {400: "Bad Request", 408: "Request Timeout"}
