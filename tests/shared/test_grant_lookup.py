"""A service that cannot reach the gateway to check an agency's grant answers 503 and
tells the client to send the request again in a moment."""

from __future__ import annotations

import httpx
import pytest
from fastapi import Request

from shared.access import GatewayGrantLookup
from shared.auth import Principal
from shared.errors import RateLimited, Unauthenticated, UpstreamUnavailable
from tests.unreachable import refusing_port

AGENCY = Principal(
    subject="agency-client",
    client_id="agency-client",
    tenant_id="tn_agency",
    scopes=frozenset({"kpi:read"}),
    token_id="t1",
)


def agency_request() -> Request:
    return Request(
        {"type": "http", "method": "GET", "path": "/", "query_string": b"",
         "headers": [(b"authorization", b"Bearer token")]}
    )  # fmt: skip


@pytest.mark.parametrize("status", [None, 502])
async def test_a_grant_that_cannot_be_checked_is_a_503_to_retry(status: int | None) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        assert status is not None
        return httpx.Response(status)

    with refusing_port() as down:
        if status is None:
            client = httpx.AsyncClient()
            url = f"http://127.0.0.1:{down}"
        else:
            client = httpx.AsyncClient(transport=httpx.MockTransport(answer))
            url = "http://gateway"
        async with client:
            lookup = GatewayGrantLookup(url, client)
            with pytest.raises(UpstreamUnavailable) as refused:
                await lookup.effective(agency_request(), AGENCY, "tn_seller")
    assert refused.value.status == 503
    assert refused.value.headers == {"Retry-After": "1"}
    assert refused.value.detail.startswith("grants cannot be checked right now")


async def test_a_token_the_gateway_has_revoked_is_a_401() -> None:
    """The gateway revoked it a moment ago and this service's copy of the list has not
    caught up: the caller's token is no good (401), nothing here is away (not 503)."""
    transport = httpx.MockTransport(lambda request: httpx.Response(401))
    async with httpx.AsyncClient(transport=transport) as client:
        lookup = GatewayGrantLookup("http://gateway", client)
        with pytest.raises(Unauthenticated) as refused:
            await lookup.effective(agency_request(), AGENCY, "tn_seller")
    assert refused.value.status == 401
    assert refused.value.headers["WWW-Authenticate"].startswith('Bearer error="invalid_token"')


@pytest.mark.parametrize(("sent", "retry_after"), [("7", "7"), (None, "1"), ("soon", "1")])
async def test_a_grant_lookup_over_the_callers_rate_is_its_429(
    sent: str | None, retry_after: str
) -> None:
    """The caller's own rate at the gateway, not an outage here: 429, not 503."""
    headers = {"Retry-After": sent} if sent else {}
    transport = httpx.MockTransport(lambda request: httpx.Response(429, headers=headers))
    async with httpx.AsyncClient(transport=transport) as client:
        lookup = GatewayGrantLookup("http://gateway", client)
        with pytest.raises(RateLimited) as refused:
            await lookup.effective(agency_request(), AGENCY, "tn_seller")
    assert refused.value.status == 429
    assert refused.value.headers == {"Retry-After": retry_after}
