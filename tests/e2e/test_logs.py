"""Logs: one JSON object a line, with tenant and trace id, and never a secret or token."""

from __future__ import annotations

import asyncio
import logging
import time

import httpx
import orjson
import pytest

from shared.telemetry import JsonFormatter
from tests.conftest import NewTenant
from tests.e2e.test_export_erasure import erasure_done

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"


async def test_request_logs_carry_tenant_and_trace_but_no_secrets(
    http: httpx.AsyncClient, new_tenant: NewTenant, caplog: pytest.LogCaptureFixture
) -> None:
    tenant = await new_tenant(scopes=["ingest:write", "kpi:read"])
    formatter = JsonFormatter("test")
    caplog.set_level(logging.INFO)
    caplog.clear()
    with caplog.at_level(logging.INFO):
        token = await http.post(
            "/oauth/token",
            data={"grant_type": "client_credentials"},
            auth=(tenant.client_id, tenant.client_secret),
        )
        response = await http.post(
            "/v1/events",
            json={"events": [{"event_id": "x", "type": "order_line"}]},
            headers={
                **tenant.headers,
                "traceparent": f"00-{TRACE_ID}-b7ad6b7169203331-01",
            },
        )
        assert token.status_code == 200 and response.status_code == 422
        # A service logs a request once the audit has recorded it, after the answer went
        # out: the lines may trail the response by a moment.
        deadline = time.monotonic() + 5
        while True:
            lines = [orjson.loads(formatter.format(record)) for record in caplog.records]
            requests = [line for line in lines if line["msg"] == "request"]
            traced = [line for line in requests if line.get("trace_id") == TRACE_ID]
            if len(traced) >= 2 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
    assert requests, lines
    # The gateway and ingest both log the push, in the caller's trace, for its tenant.
    assert len(traced) >= 2, requests
    assert all(line.get("tenant") == tenant.tenant_id for line in traced), traced
    assert {line["status"] for line in traced} == {422}
    # A token request names its client's tenant too: the issue and the request line.
    issued = [line for line in lines if line["msg"] == "access token issued"]
    token_lines = [line for line in requests if line["path"] == "/oauth/token"]
    for named in (issued, token_lines):
        assert named and {line.get("tenant") for line in named} == {tenant.tenant_id}, named
    text = "\n".join(formatter.format(record) for record in caplog.records)
    for secret in (tenant.client_secret, tenant.token, token.json()["access_token"]):
        assert secret not in text


async def test_each_services_erasure_is_logged_in_the_trace_that_asked_for_it(
    http: httpx.AsyncClient, new_tenant: NewTenant, caplog: pytest.LogCaptureFixture
) -> None:
    seller = await new_tenant()
    formatter = JsonFormatter("test")
    asked_in = "4bf92f3577b34da6a3ce929d0e0e4736"
    with caplog.at_level(logging.INFO):
        asked = await http.request(
            "DELETE",
            f"/v1/tenants/{seller.tenant_id}",
            json={"confirm": seller.tenant_id},
            headers={**seller.headers, "traceparent": f"00-{asked_in}-00f067aa0ba902b7-01"},
        )
        assert asked.status_code == 202, asked.text
        await erasure_done(http, seller, seller.tenant_id)
    lines = [orjson.loads(formatter.format(record)) for record in caplog.records]
    erased = [
        line
        for line in lines
        if line["msg"] == "tenant erased" and line.get("erasure_id") == asked.json()["id"]
    ]
    # Ingest, metrics and targets each erase their own rows.
    assert len(erased) == 3, erased
    assert {line.get("trace_id") for line in erased} == {asked_in}, erased
    assert {line.get("tenant") for line in erased} == {seller.tenant_id}, erased


def test_a_line_is_stamped_in_utc_to_the_millisecond() -> None:
    """Whatever the host's zone, as the audit trail is."""
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "hello", None, None)
    record.created = 1_772_356_500.25  # 2026-03-01T09:15:00.250Z
    line = orjson.loads(JsonFormatter("test").format(record))
    assert line["ts"] == "2026-03-01T09:15:00.250Z"
