"""gzip for large answers of the routes a service names, when the client takes it.

Only routes whose answers hold no secret should be named: a compressed secret beside
text a caller chose is what BREACH measures.
"""

from __future__ import annotations

from starlette.datastructures import Headers, MutableHeaders
from starlette.middleware.gzip import GZipResponder
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.negotiation import coding_quality, list_header, vary_on

# Below this an answer is a few packets, sent in milliseconds on any link worth the
# name, while compressing it would add a tenth to the CPU of a repeated dashboard
# question (about 1 ms in all, answered from remembered bytes).
MINIMUM_BYTES = 32 * 1024
# Measured on a year of KPIs by day (their unrounded decimals are most of the bytes):
# level 1 makes them 3.9 times smaller at 157 MB/s, level 5 4.4 times at 67 MB/s, 9
# 4.6 times at 16 MB/s. Answers over 128 KiB are compressed in a worker thread.
LEVEL = 1


def accepts_gzip(accept_encoding: str) -> bool:
    """Whether ``Accept-Encoding`` allows gzip (RFC 9110 §12.5.3): named, or ``*``,
    with a weight above zero; ``gzip;q=0`` refuses it."""
    return coding_quality(accept_encoding, ("gzip", "x-gzip")) > 0


class CompressedAnswers:
    """Compresses the answers of ``paths`` (each path and those under it)."""

    def __init__(self, app: ASGIApp, paths: tuple[str, ...]) -> None:
        self.app = app
        self.paths = paths

    def _compressed_path(self, path: str) -> bool:
        return any(path == prefix or path.startswith(f"{prefix}/") for prefix in self.paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self._compressed_path(scope["path"]):
            await self.app(scope, receive, send)
            return
        takes_gzip = accepts_gzip(list_header(Headers(scope=scope), "accept-encoding"))

        async def labelled(message: Message) -> None:
            # Every answer tells caches that it depends on Accept-Encoding. To a client
            # that takes gzip the tag is weak whether or not these bytes were compressed,
            # as a strong tag names exact bytes (RFC 9110 §8.8.3): so the 304, which has
            # no body to decide by, repeats its 200's tag (§15.4.5) and a cache holding
            # that 200 is freshened by it. An If-None-Match naming either form matches,
            # as tags are compared weakly there.
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                vary_on(headers, "Accept-Encoding")
                etag = headers.get("etag")
                if takes_gzip and etag and not etag.startswith("W/"):
                    headers["etag"] = f"W/{etag}"
            await send(message)

        if not takes_gzip:
            await self.app(scope, receive, labelled)
            return
        # Starlette's responder, not its middleware: the middleware would decide again,
        # by a plain substring, whether the client takes gzip (and refuse ``*``).
        responder = GZipResponder(self.app, MINIMUM_BYTES, compresslevel=LEVEL)
        await responder(scope, receive, labelled)
