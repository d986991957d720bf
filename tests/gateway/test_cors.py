"""Browser apps of other origins (CORS): only those configured, on every gateway route."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from devstack.embedded import free_port
from devstack.stack import service_settings
from services.gateway.app import create_app
from services.gateway.config import Settings
from shared.settings import InvalidSettings
from tests.conftest import NewTenant, Stack, serve_app

APP = "https://app.example.com"
DEV = "http://localhost:5173"
KPIS = '{ kpis(input: {metrics: ["gmv"], from: "2026-01-01", to: "2026-01-31", grain: TOTAL}) { currency } }'


@pytest.fixture
async def browser_gateway(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    """A second gateway on the same database, with two allowed origins."""
    settings = service_settings("gateway", stack.config).model_copy(
        update={"cors_origins": f"{APP}, {DEV}", "port": free_port()}
    )
    async with (
        serve_app(create_app(settings), "127.0.0.1", settings.port),
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{settings.port}", timeout=30) as client,
    ):
        yield client


def preflight(origin: str, method: str = "POST") -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "authorization, content-type, if-none-match, "
        "apollographql-client-name, apollographql-client-version",
    }


async def test_an_allowed_origin_is_answered_its_preflight_and_reads_the_answer(
    browser_gateway: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    for path in ("/graphql", "/oauth/token", "/v1/kpis"):
        response = await browser_gateway.options(path, headers=preflight(DEV))
        assert response.status_code == 200, (path, response.text)
        assert response.headers["access-control-allow-origin"] == DEV
        allowed = response.headers["access-control-allow-headers"].lower()
        assert {"authorization", "content-type", "if-none-match", "apollographql-client-name"} <= {
            h.strip() for h in allowed.split(",")
        }
        # Bearer tokens, never cookies.
        assert "access-control-allow-credentials" not in response.headers

    tenant = await new_tenant(["kpi:read"])
    response = await browser_gateway.post(
        "/graphql", json={"query": KPIS}, headers={**tenant.headers, "Origin": APP}
    )
    assert response.status_code == 200, response.text
    assert response.json()["data"]["kpis"]["currency"] == "USD"
    assert response.headers["access-control-allow-origin"] == APP
    readable = response.headers["access-control-expose-headers"].lower()
    # A KPI CSV's warnings come in a header of their own; a push says it was a replay.
    assert {"etag", "lodestar-warnings", "idempotent-replayed"} <= {
        h.strip() for h in readable.split(",")
    }


async def test_another_origin_is_refused_and_given_no_cors_header(
    browser_gateway: httpx.AsyncClient, new_tenant: NewTenant
) -> None:
    response = await browser_gateway.options("/graphql", headers=preflight("https://evil.example"))
    assert response.status_code == 400
    assert "access-control-allow-origin" not in response.headers
    # In the contract's error body, naming what was refused, as every refusal is.
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {
        "error": "bad_request",
        "detail": "the preflight is refused",
        "errors": [
            {
                "field": "header.Origin",
                "reason": "is not an allowed origin (LODESTAR_GATEWAY_CORS_ORIGINS)",
            }
        ],
    }
    # Each refused part is named, the origin allowed or not.
    unusual = await browser_gateway.options(
        "/v1/kpis",
        headers={
            "Origin": APP,
            "Access-Control-Request-Method": "TRACE",
            "Access-Control-Request-Headers": "authorization, x-secret-debug",
        },
    )
    assert unusual.status_code == 400
    assert unusual.headers["access-control-allow-origin"] == APP
    assert [e["field"] for e in unusual.json()["errors"]] == [
        "header.Access-Control-Request-Method",
        "header.Access-Control-Request-Headers",
    ]
    # A request sent anyway is answered, but the browser keeps it from the page.
    tenant = await new_tenant(["kpi:read"])
    response = await browser_gateway.post(
        "/graphql",
        json={"query": KPIS},
        headers={**tenant.headers, "Origin": "https://evil.example"},
    )
    assert "access-control-allow-origin" not in response.headers


async def test_without_origins_configured_there_is_no_cors(http: httpx.AsyncClient) -> None:
    response = await http.options("/graphql", headers=preflight(APP))
    assert response.status_code == 405
    assert "access-control-allow-origin" not in response.headers


@pytest.mark.parametrize(
    "origins",
    [
        "https://app.example.com/",
        "app.example.com",
        "https://app.example.com/dash",
        "ftp://x",
        "https://*.example.com",
        "https://app.example.com:99999",
        "https://user@app.example.com",
        "HTTPS://APP.EXAMPLE.COM",
    ],
)
def test_an_origin_browsers_never_send_is_refused_at_start(origins: str) -> None:
    with pytest.raises(InvalidSettings) as raised:
        Settings(cors_origins=f"{DEV},{origins}")
    message = str(raised.value)
    assert message.startswith("LODESTAR_GATEWAY_CORS_ORIGINS: ") and repr(origins) in message


def test_origins_are_read_as_a_list() -> None:
    settings = Settings.model_validate({"cors_origins": f" {APP} ,,{DEV}"})
    assert settings.allowed_origins == [APP, DEV]
    assert Settings.model_validate({"cors_origins": "*"}).allowed_origins == ["*"]
    addresses = "http://127.0.0.1:8080,http://[::1]:3000"
    assert len(Settings.model_validate({"cors_origins": addresses}).allowed_origins) == 2
    assert Settings.model_validate({}).allowed_origins == []
