"""Forwarding `/v1/*` calls to the owning service, and the merged OpenAPI document."""

from __future__ import annotations

import asyncio
import copy
import logging
import time
from typing import Any
from urllib.parse import quote_from_bytes

import httpx
from fastapi import Request, Response

from services.gateway.proxy.routes import DOWNSTREAM
from shared.errors import UpstreamUnavailable

log = logging.getLogger(__name__)

FORWARDED_REQUEST_HEADERS = (
    "authorization",
    "content-type",
    "accept",
    "idempotency-key",
    "x-request-id",
    # Conditional GETs: an unchanged KPI answer is a 304 without a body; and conditional
    # changes: settings replaced only if still as read.
    "if-none-match",
    "if-match",
    # The audit trail records what the caller ran.
    "user-agent",
)
PASSED_RESPONSE_HEADERS = (
    "content-type",
    # A CSV answer's warnings (a missing FX rate), which its cells cannot carry.
    "lodestar-warnings",
    # A 405 names the methods the route takes (RFC 9110 §15.5.6).
    "allow",
    "www-authenticate",
    "retry-after",
    "location",
    "content-disposition",
    "cache-control",
    "etag",
    "vary",
    # A push answered from its Idempotency-Key's first answer.
    "idempotent-replayed",
)


# RFC 3986's unreserved and sub-delims, ":", "@", "/", and "%" of the escapes sent.
_KEPT_IN_PATHS = "/:@!$&'()*+,;=-._~%"


def service_urls(settings: Any) -> dict[str, str]:
    return {
        "ingest": settings.ingest_url,
        "metrics": settings.metrics_url,
        "targets": settings.targets_url,
    }


# A store's new time zone rebuckets its whole history within the request (some 110 to
# 160 µs a line): 340,000 lines outlasted the proxy's 30 s, and the change was made
# after the caller had its 503.
STORE_ZONES_PATH = "/v1/settings/stores/"
REBUCKETING_SECONDS = 600.0


async def forward(
    request: Request,
    client: httpx.AsyncClient,
    service: str,
    base_url: str,
    method: str | None = None,
) -> Response:
    """Sends the call on unchanged (but for ``method``, when given) and answers with what
    the service answered."""
    # The raw bytes: a header value that is no ASCII is the service's to judge (a token
    # that is no token gets its 401 there), not a reason for the hop to fail.
    headers = [
        (name, value)
        for name, value in request.headers.raw
        if name.decode("latin-1").lower() in FORWARDED_REQUEST_HEADERS
        and name.lower() != b"x-forwarded-for"
    ]
    # The services' audit trail records the original caller, not the gateway.
    peer = request.client.host if request.client else None
    chain = [v for v in (request.headers.get("x-forwarded-for"), peer) if v]
    if chain:
        headers.append((b"x-forwarded-for", ", ".join(chain).encode("latin-1")))
    # The path as sent, still percent-encoded: the service decodes it once, as the
    # gateway did to route it. Forwarded decoded, store `p%41` (sent `p%2541`) reached
    # the service as `p%41`, which it decoded again into another store, `pA`.
    # Bytes a client left unencoded (a space, UTF-8) are encoded, the rest kept.
    raw_path = request.scope.get("raw_path")
    path = quote_from_bytes(raw_path, safe=_KEPT_IN_PATHS) if raw_path else request.url.path
    url = f"{base_url.rstrip('/')}{path}"
    if request.url.query:
        # The raw query string, so the service sees exactly what the caller sent.
        url = f"{url}?{request.url.query}"
    rebucketing = request.url.path.startswith(STORE_ZONES_PATH) and request.method == "PUT"
    outgoing = client.build_request(
        method or request.method,
        url,
        content=await request.body(),
        headers=headers,
        timeout=REBUCKETING_SECONDS if rebucketing else httpx.USE_CLIENT_DEFAULT,
    )
    if "user-agent" not in request.headers:
        # httpx's own would stand in the service's audit trail for a caller that sent
        # none (the gateway's own entries say null).
        del outgoing.headers["user-agent"]
    try:
        upstream = await client.send(outgoing)
    except httpx.TimeoutException:
        # A write sent whole may still be done there: a 503 alone read as "nothing was".
        maybe_done = (
            "; what was asked may still take effect there: read it back before asking again"
            if outgoing.method not in ("GET", "HEAD")
            else ""
        )
        raise UpstreamUnavailable.for_now(
            f"the {service} service did not answer in time{maybe_done}"
        ) from None
    except httpx.TransportError:
        raise UpstreamUnavailable.for_now(f"the {service} service is unavailable") from None
    passed = {
        name: value
        for name, value in upstream.headers.items()
        if name.lower() in PASSED_RESPONSE_HEADERS
    }
    return Response(content=upstream.content, status_code=upstream.status_code, headers=passed)


class OpenApiMerger:
    """One OpenAPI document for every `/v1/` route, cached for a few seconds. A service
    that is away (restarting) is described by the last document it gave: its routes do
    not change while it runs, and a client generated meanwhile must not lose them."""

    TTL_SECONDS = 10.0

    def __init__(self, client: httpx.AsyncClient, urls: dict[str, str]) -> None:
        self.client = client
        self.urls = urls
        self._cached: tuple[float, dict[str, Any]] | None = None
        self._last: dict[str, dict[str, Any]] = {}

    async def _fetch(self, service: str) -> dict[str, Any] | None:
        try:
            response = await self.client.get(
                f"{self.urls[service].rstrip('/')}/openapi.json", timeout=5.0
            )
            response.raise_for_status()
            document: dict[str, Any] = response.json()
        except (httpx.HTTPError, ValueError):
            log.warning("openapi of %s unavailable", service)
            return self._last.get(service)
        self._last[service] = document
        return document

    async def document(self, own: dict[str, Any]) -> dict[str, Any]:
        """The whole document; 503 while a service that never answered is away, rather
        than a document without its routes."""
        if self._cached and time.monotonic() - self._cached[0] < self.TTL_SECONDS:
            return self._cached[1]
        fetched = await asyncio.gather(*(self._fetch(s) for s in DOWNSTREAM))
        missing = [s for s, document in zip(DOWNSTREAM, fetched, strict=True) if document is None]
        if missing:
            raise UpstreamUnavailable.for_now(
                f"the API document lacks the routes of {', '.join(missing)}, which "
                f"{'is' if len(missing) == 1 else 'are'} unavailable"
            )
        merged = copy.deepcopy(own)
        merged["info"] = {
            "title": "Lodestar API",
            "version": own.get("info", {}).get("version", "1"),
            "description": "Every /v1/ route of every Lodestar service, served by the gateway.",
        }
        schemas = merged.setdefault("components", {}).setdefault("schemas", {})
        for service, document in zip(DOWNSTREAM, fetched, strict=True):
            assert document is not None
            renames = _merge_schemas(
                schemas, document.get("components", {}).get("schemas", {}), service
            )
            for path, item in document.get("paths", {}).items():
                if path.startswith("/v1/"):
                    merged.setdefault("paths", {})[path] = _rename_refs(item, renames)
        self._cached = (time.monotonic(), merged)
        return merged


def _merge_schemas(into: dict[str, Any], incoming: dict[str, Any], service: str) -> dict[str, str]:
    renames: dict[str, str] = {}
    for name, schema in incoming.items():
        if name in into and into[name] != schema:
            renames[name] = f"{service}_{name}"
    for name, schema in incoming.items():
        into[renames.get(name, name)] = _rename_refs(schema, renames)
    return renames


def _rename_refs(node: Any, renames: dict[str, str]) -> Any:
    if not renames:
        return node
    if isinstance(node, dict):
        result = {}
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                name = value.rsplit("/", 1)[-1]
                result[key] = f"#/components/schemas/{renames.get(name, name)}"
            else:
                result[key] = _rename_refs(value, renames)
        return result
    if isinstance(node, list):
        return [_rename_refs(item, renames) for item in node]
    return node
