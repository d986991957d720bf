"""Body size and per-client rate limits, as every service's app (``build_app``) has them."""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
from fastapi import FastAPI, Request, Response
from joserfc import jwt
from joserfc.jwk import RSAKey

from shared import limits
from shared.access import EFFECTIVE_GRANT_PATH
from shared.errors import PayloadTooLarge
from shared.limits import MAX_CLIENT_ID_LENGTH, USERINFO_PATH, RateLimiter, client_key
from shared.revocations import REVOKED_TOKENS_PATH
from shared.service import build_app
from shared.settings import ServiceSettings
from shared.telemetry import setup_telemetry
from tests.conftest import TokenMinter
from tests.unreachable import refusing_port


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def unsigned_token(**claims: Any) -> str:
    """A JWT-shaped token nobody signed: anyone can write one naming any client."""

    def part(value: Any) -> str:
        return base64.urlsafe_b64encode(orjson.dumps(value)).rstrip(b"=").decode()

    return f"{part({'alg': 'RS256', 'typ': 'at+jwt'})}.{part(claims)}.c2lnbmF0dXJl"


# Signs the tokens the limited apps verify.
MINTER = TokenMinter(RSAKey.generate_key(2048, parameters={"kid": "limits-key"}))


def bearer(client_id: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {MINTER.mint('tn_1', ['kpi:read'], client_id=client_id)}"}


def limited_app(**settings: Any) -> tuple[FastAPI, FakeClock, list[bytes]]:
    """A tiny app built like the services'; the list collects the bodies routes saw."""
    app = build_app(
        "limits-test",
        ServiceSettings.model_validate(
            {
                "max_body_bytes": 100,
                "rate_limit_per_second": 1,
                "rate_limit_burst": 3,
                **settings,
            }
        ),
    )
    clock = FakeClock()
    app.state.rate_limiter.clock = clock
    app.state.token_verifier = MINTER.verifier()
    seen: list[bytes] = []

    @app.post("/echo")
    async def echo(request: Request) -> Response:
        body = await request.body()
        seen.append(body)
        return Response(body, media_type="application/octet-stream")

    @app.post("/items")
    async def items(body: dict[str, Any]) -> dict[str, int]:
        # A body FastAPI parses itself, as the services' JSON routes have.
        seen.append(orjson.dumps(body))
        return {"keys": len(body)}

    @app.get("/ping")
    async def ping() -> dict[str, str]:
        return {"pong": "yes"}

    @app.post("/ignore")
    async def ignore() -> dict[str, str]:
        # Never reads its body: only the declared length can refuse it.
        return {"ignored": "yes"}

    @app.post("/graphql")
    async def graphql() -> dict[str, Any]:
        return {"data": {"ok": True}}

    @app.post("/too-many-events")
    async def too_many_events() -> None:
        raise PayloadTooLarge("at most 5000 events a request")

    return app, clock, seen


def client_of(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://limits")


async def chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


# Body size


async def test_body_over_the_limit_by_content_length_gets_413() -> None:
    app, _, seen = limited_app()
    async with client_of(app) as client:
        response = await client.post("/echo", content=b"x" * 101)
    assert response.status_code == 413
    assert response.json() == {
        "error": "payload_too_large",
        "detail": "the request body is larger than 100 bytes",
        "errors": [{"field": "body", "reason": "at most 100 bytes"}],
    }
    assert seen == []


async def test_declared_length_over_the_limit_is_refused_before_the_body_is_read() -> None:
    app, _, _ = limited_app()
    async with client_of(app) as client:
        refused = await client.post("/ignore", content=b"x" * 101)
        # Unread, an undeclared body of any size is no one's burden (one with no type is
        # read as JSON, for the input guard to look at, and so counted).
        unread = await client.post(
            "/ignore",
            content=chunks(b"x" * 101),
            headers={"Content-Type": "application/octet-stream"},
        )
    assert refused.status_code == 413
    assert refused.json()["error"] == "payload_too_large"
    assert unread.status_code == 200


async def test_a_content_length_that_is_not_a_number_is_not_trusted() -> None:
    app, _, seen = limited_app()
    async with client_of(app) as client:
        response = await client.post(
            "/echo", content=chunks(b"x" * 101), headers={"Content-Length": "many"}
        )
    assert response.status_code == 413
    assert seen == []


async def test_chunked_body_over_the_limit_gets_413() -> None:
    app, _, seen = limited_app()
    async with client_of(app) as client:
        for path in ("/echo", "/items"):
            request = client.build_request("POST", path, content=chunks(b"x" * 60, b"y" * 60))
            assert "content-length" not in request.headers
            assert request.headers["transfer-encoding"] == "chunked"
            response = await client.send(request)
            assert response.status_code == 413, path
            assert response.json()["error"] == "payload_too_large"
    assert seen == []


async def test_a_body_trickled_past_its_time_gets_408_and_frees_the_reader(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A body sent a byte a second held its reader (and a large body's turn) for as long
    as it trickled: eight of them shut every tenant out of large pushes."""
    monkeypatch.setattr(limits, "BODY_GRACE_SECONDS", 0.3)
    monkeypatch.setattr(limits, "BODY_BYTES_A_SECOND", 10**9)
    app, _, seen = limited_app()

    async def trickled() -> AsyncIterator[bytes]:
        yield b"x" * 10
        await asyncio.sleep(2)
        yield b"x" * 10

    async with client_of(app) as client:
        started = time.monotonic()
        slow = await client.post("/echo", content=trickled(), headers={"Content-Length": "20"})
        waited = time.monotonic() - started
        # A body sent in time is read whole, however long the route then takes.
        prompt = await client.post("/echo", content=b"y" * 20)
    assert slow.status_code == 408, slow.text
    assert slow.json() == {
        "error": "request_timeout",
        "detail": "the request body was not received in time (10 bytes came)",
        "errors": [{"field": "body", "reason": "sent too slowly"}],
    }
    assert waited < 1.5
    assert prompt.status_code == 200
    assert seen == [b"y" * 20]


async def test_headers_past_their_limit_get_431_in_the_contracts_body() -> None:
    """A 40 MB header was read and answered 200: headers escaped every bound."""
    app, _, _ = limited_app()
    async with client_of(app) as client:
        refused = await client.get("/ping", headers={"X-Big": "a" * (limits.MAX_HEADER_BYTES)})
        # A token as large as any verifier takes passes.
        taken = await client.get("/ping", headers={"X-Token-Sized": "a" * 128_000})
    assert refused.status_code == 431
    assert refused.json()["error"] == "request_header_fields_too_large"
    assert refused.json()["errors"] == [
        {"field": "header", "reason": f"at most {limits.MAX_HEADER_BYTES} bytes in all"}
    ]
    assert taken.status_code == 200


async def test_body_longer_than_its_content_length_gets_413() -> None:
    app, _, seen = limited_app()
    async with client_of(app) as client:
        response = await client.post(
            "/echo", content=chunks(b"x" * 60, b"y" * 60), headers={"Content-Length": "10"}
        )
    assert response.status_code == 413
    assert response.json()["error"] == "payload_too_large"
    assert seen == []


async def test_bodies_up_to_the_limit_pass_intact() -> None:
    app, _, seen = limited_app(rate_limit_per_second=0)
    exact = bytes(range(100))
    # Bytes, said so: a body of no type is read as JSON, which holds no raw NUL.
    binary = {"Content-Type": "application/octet-stream"}
    async with client_of(app) as client:
        whole = await client.post("/echo", content=exact, headers=binary)
        chunked = await client.post("/echo", content=chunks(exact[:40], exact[40:]), headers=binary)
        parsed = await client.post("/items", json={"a": 1, "b": 2})
    assert whole.status_code == 200 and whole.content == exact
    assert chunked.status_code == 200 and chunked.content == exact
    assert parsed.status_code == 200 and parsed.json() == {"keys": 2}
    assert seen[:2] == [exact, exact]


async def test_a_payload_too_large_of_the_route_itself_is_answered_unchanged() -> None:
    app, _, _ = limited_app()
    async with client_of(app) as client:
        response = await client.post("/too-many-events", content=b"{}")
    assert response.status_code == 413
    assert response.json() == {
        "error": "payload_too_large",
        "detail": "at most 5000 events a request",
    }


async def test_max_body_bytes_0_turns_the_body_limit_off() -> None:
    app, _, seen = limited_app(max_body_bytes=0)
    big = b"z" * 1_000_000
    async with client_of(app) as client:
        response = await client.post("/echo", content=chunks(big[:500_000], big[500_000:]))
    assert response.status_code == 200
    assert seen == [big]


# Rate


async def test_burst_exhausted_gets_429_with_retry_after() -> None:
    app, _, _ = limited_app(rate_limit_per_second=0.25)
    async with client_of(app) as client:
        passed = [
            (await client.get("/ping", headers=bearer("erp-1"))).status_code for _ in range(3)
        ]
        refused = await client.get("/ping", headers=bearer("erp-1"))
    assert passed == [200, 200, 200]
    assert refused.status_code == 429
    # One request more needs 1 / 0.25 = 4 seconds of refill.
    assert refused.headers["retry-after"] == "4"
    assert refused.json() == {
        "error": "rate_limited",
        "detail": "too many requests; retry after 4 s",
    }


async def test_a_graphql_body_over_a_large_one_is_too_large_whoever_sends_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A GraphQL request takes a few kilobytes; one of megabytes (a document, a
    variable) held the gateway's event loop for seconds, with a token or without."""
    monkeypatch.setattr(limits, "LARGE_BODY_BYTES", 50)
    app, _, _ = limited_app(rate_limit_per_second=0, max_body_bytes=1000)
    async with client_of(app) as client:
        for headers in ({}, bearer("dashboard")):
            answer = await client.post("/graphql", content=b"{" + b" " * 60 + b"}", headers=headers)
            assert answer.status_code == 413, answer.text
            [error] = answer.json()["errors"]
            assert error["extensions"]["errors"] == [
                {"field": "body", "reason": "at most 50 bytes"}
            ]
            assert answer.headers["connection"] == "close"


async def test_refusals_at_graphql_are_graphql_errors() -> None:
    """A GraphQL client reads ``errors`` and their codes; REST's body would leave it
    nothing to read. The status and Retry-After stay as REST has them."""
    app, _, _ = limited_app(rate_limit_per_second=0.25, rate_limit_burst=2)
    async with client_of(app) as client:
        too_large = await client.post("/graphql", content=b"{" + b" " * 120 + b"}")
        unreadable = await client.post("/graphql?x=1&x=2", json={"query": "{ ok }"})
        limited = await client.post("/graphql", json={"query": "{ ok }"})
    assert too_large.status_code == 413
    assert too_large.json() == {
        "errors": [
            {
                "message": "the request body is larger than 100 bytes",
                "extensions": {
                    "code": "BAD_USER_INPUT",
                    "error": "payload_too_large",
                    "errors": [{"field": "body", "reason": "at most 100 bytes"}],
                },
            }
        ]
    }
    assert limited.status_code == 429
    assert limited.headers["retry-after"] == "4"
    assert limited.json() == {
        "errors": [
            {
                "message": "too many requests; retry after 4 s",
                "extensions": {"code": "RATE_LIMITED", "error": "rate_limited", "retryAfter": 4},
            }
        ]
    }
    assert unreadable.status_code == 422
    [error] = unreadable.json()["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert error["extensions"]["errors"][0]["field"] == "x"


async def test_retry_after_is_at_least_one_second() -> None:
    app, clock, _ = limited_app(rate_limit_per_second=10, rate_limit_burst=1)
    async with client_of(app) as client:
        assert (await client.get("/ping")).status_code == 200
        clock.advance(0.05)
        refused = await client.get("/ping")
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "1"


async def test_refused_requests_are_logged_by_tracing(caplog: pytest.LogCaptureFixture) -> None:
    app, _, _ = limited_app(rate_limit_burst=1)
    with caplog.at_level(logging.INFO, logger="lodestar.http"):
        async with client_of(app) as client:
            await client.post("/echo", content=b"x" * 101)
            await client.get("/ping")
    # Only this app's: the session's stack logs its own (a service's fetch of the JWKS).
    statuses = [
        r.fields["status"]  # type: ignore[attr-defined]
        for r in caplog.records
        if r.name == "lodestar.http"
        and r.getMessage() == "request"
        and r.fields["path"] in ("/echo", "/ping")  # type: ignore[attr-defined]
    ]
    assert statuses == [413, 429]


async def test_the_services_poll_of_revoked_tokens_writes_no_log_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Each service asks every second: a line each buried the lines a crash leaves."""
    app, _, _ = limited_app(rate_limit_burst=10)

    @app.get(REVOKED_TOKENS_PATH)
    async def revoked() -> dict[str, list[str]]:
        return {"revoked": []}

    with caplog.at_level(logging.INFO, logger="lodestar.http"):
        async with client_of(app) as client:
            assert (await client.get(REVOKED_TOKENS_PATH)).status_code == 200
            assert (await client.get("/ping")).status_code == 200
    paths = [
        r.fields["path"]  # type: ignore[attr-defined]
        for r in caplog.records
        if r.name == "lodestar.http" and r.getMessage() == "request"
    ]
    assert REVOKED_TOKENS_PATH not in paths and "/ping" in paths
    # Nor does httpx say each call the services make (its failures still show).
    setup_telemetry("limits-test", "", "INFO")
    assert logging.getLogger("httpx").getEffectiveLevel() == logging.WARNING


async def test_each_client_id_has_its_own_bucket() -> None:
    app, _, _ = limited_app()
    async with client_of(app) as client:
        for _ in range(3):
            assert (await client.get("/ping", headers=bearer("erp-1"))).status_code == 200
        assert (await client.get("/ping", headers=bearer("erp-1"))).status_code == 429
        assert (await client.get("/ping", headers=bearer("erp-2"))).status_code == 200
        # Same address, no token: the address's own bucket, still full.
        assert (await client.get("/ping")).status_code == 200


async def test_the_bucket_refills_over_time_up_to_the_burst() -> None:
    app, clock, _ = limited_app()
    async with client_of(app) as client:

        async def status() -> int:
            return (await client.get("/ping", headers=bearer("erp-1"))).status_code

        assert [await status() for _ in range(4)] == [200, 200, 200, 429]
        clock.advance(0.5)
        assert await status() == 429
        clock.advance(0.5)
        assert await status() == 200
        assert await status() == 429
        # A long pause refills to the burst, not beyond.
        clock.advance(3600)
        assert [await status() for _ in range(4)] == [200, 200, 200, 429]


async def test_health_and_readiness_are_never_limited() -> None:
    class DownDatabase:
        async def ping(self) -> None:
            raise ConnectionRefusedError

    with refusing_port() as down:
        app, _, _ = limited_app(rate_limit_burst=1, kafka_bootstrap_servers=f"127.0.0.1:{down}")
        app.state.db = DownDatabase()
        async with client_of(app) as client:
            assert (await client.get("/ping")).status_code == 200
            assert (await client.get("/ping")).status_code == 429
            for _ in range(5):
                assert (await client.get("/healthz")).status_code == 200
                # Not ready (nothing is up), but answered: never 429.
                assert (await client.get("/readyz")).status_code == 503


async def test_a_services_grant_lookup_fills_a_bucket_of_its_own() -> None:
    """A service asks the gateway for an agency's grant with the agency's token, once
    for each request the gateway counted already: counting it with them halved the
    agency's rate and turned its last requests into 503s. In a bucket of its own, as
    large, it costs the agency nothing, and calling the path directly buys no more
    than any route."""
    app, _, _ = limited_app(rate_limit_burst=1)

    @app.get(EFFECTIVE_GRANT_PATH)
    async def effective() -> dict[str, str]:
        return {}

    @app.get(USERINFO_PATH)
    async def userinfo() -> dict[str, str]:
        return {}

    async with client_of(app) as client:
        agency = bearer("agency")
        assert (await client.get("/ping", headers=agency)).status_code == 200
        assert (await client.get(EFFECTIVE_GRANT_PATH, headers=agency)).status_code == 200
        assert (await client.get(EFFECTIVE_GRANT_PATH, headers=agency)).status_code == 429
        assert (await client.get("/ping", headers=agency)).status_code == 429
        # UserInfo, an OAuth route, goes by its token's client, not by the address.
        for user in ("portal-a", "portal-b"):
            assert (await client.get(USERINFO_PATH, headers=bearer(user))).status_code == 200


GARBAGE_AUTHORIZATION = [
    "Bearer",
    "Bearer ",
    "Bearer !!!not-a-token",
    "Bearer a.b.c",
    "Bearer a.%%%%.c",
    "Bearer x." + base64.urlsafe_b64encode(b"[1, 2]").decode() + ".y",
    "Bearer " + unsigned_token(client_id=5),
    "Bearer " + unsigned_token(client_id=""),
    "Bearer " + unsigned_token(sub="no-client-id"),
    "Bearer " + unsigned_token(client_id="x" * (MAX_CLIENT_ID_LENGTH + 1)),
    "Basic " + base64.b64encode(b"erp-1:secret").decode(),
    "bearer.only.dots",
]


@pytest.mark.parametrize("authorization", GARBAGE_AUTHORIZATION)
async def test_garbage_authorization_is_keyed_by_address(authorization: str) -> None:
    scope = {
        "type": "http",
        "path": "/v1/kpis",
        "headers": [(b"authorization", authorization.encode())],
        "client": ("203.0.113.7", 5555),
    }
    assert await client_key(scope, MINTER.verifier()) == "ip:203.0.113.7"


async def test_non_ascii_authorization_is_keyed_by_address() -> None:
    scope = {
        "type": "http",
        "path": "/v1/kpis",
        "headers": [(b"authorization", b"Bearer \xff\xfe.\xc3\xa9.x")],
    }
    assert await client_key(scope, MINTER.verifier()) == "ip:unknown"


async def test_a_real_access_token_is_keyed_by_its_client_id() -> None:
    # A client's own token (client credentials) names it as its subject too.
    token = MINTER.mint("tn_1", ["kpi:read"], client_id="erp-7", sub="erp-7")
    scope = {
        "type": "http",
        "path": "/v1/kpis",
        "headers": [(b"authorization", f"Bearer {token}".encode())],
        "client": ("203.0.113.7", 5555),
    }
    assert await client_key(scope, MINTER.verifier()) == "client:erp-7"
    # At the sign-in endpoints a bearer header, real or made up, buys no bucket of its own.
    assert await client_key({**scope, "path": "/oauth/token"}, MINTER.verifier()) == (
        "ip:203.0.113.7"
    )


async def test_each_user_of_one_application_has_a_bucket_of_its_own() -> None:
    """A dashboard or an agency portal is one client every person signs in through:
    one of them asking too fast stopped the owner too."""
    keys = []
    for subject in ("us_viewer", "us_owner"):
        token = MINTER.mint("tn_1", ["kpi:read"], client_id="portal", sub=subject)
        scope = {
            "type": "http",
            "path": "/v1/kpis",
            "headers": [(b"authorization", f"Bearer {token}".encode())],
            "client": ("203.0.113.7", 5555),
        }
        keys.append(await client_key(scope, MINTER.verifier()))
    assert keys == ["user:portal us_viewer", "user:portal us_owner"]


async def test_an_external_providers_token_is_keyed_by_its_azp() -> None:
    # Keycloak, Auth0 and Entra name the client as azp, and no client_id.
    now = int(time.time())
    claims = {"iss": MINTER.issuer, "aud": MINTER.audience, "sub": "user-1", "exp": now + 60}
    claims |= {"iat": now, "jti": "j1", "azp": "seller-dashboard", "tenant": "tn_1"}
    token = jwt.encode({"alg": "RS256", "typ": "at+jwt", "kid": "limits-key"}, claims, MINTER.key)
    scope = {
        "type": "http",
        "path": "/v1/kpis",
        "headers": [(b"authorization", f"Bearer {token}".encode())],
        "client": ("203.0.113.7", 5555),
    }
    assert await client_key(scope, MINTER.verifier()) == "user:seller-dashboard user-1"


async def test_tokens_naming_a_client_without_its_signature_never_spend_its_bucket() -> None:
    """Client ids are no secret (a public client's is in every sign-in link): a made-up
    token naming one is charged to its sender's address, and the client's own requests
    still pass."""
    app, _, _ = limited_app()
    async with client_of(app) as client:
        forged = {"Authorization": f"Bearer {unsigned_token(client_id='erp-1')}"}
        for _ in range(3):
            assert (await client.get("/ping", headers=forged)).status_code == 200
        assert (await client.get("/ping", headers=forged)).status_code == 429
        # An expired or revoked token of the client is no better than a made-up one.
        expired = MINTER.mint("tn_1", ["kpi:read"], client_id="erp-1", exp=1)
        response = await client.get("/ping", headers={"Authorization": f"Bearer {expired}"})
        assert response.status_code == 429
        assert [
            (await client.get("/ping", headers=bearer("erp-1"))).status_code for _ in range(3)
        ] == [200, 200, 200]


async def test_garbage_authorization_shares_the_address_bucket() -> None:
    app, _, _ = limited_app(rate_limit_burst=len(GARBAGE_AUTHORIZATION) + 1)
    async with client_of(app) as client:
        for authorization in GARBAGE_AUTHORIZATION:
            response = await client.get("/ping", headers={"Authorization": authorization})
            assert response.status_code == 200, authorization
        assert (await client.get("/ping")).status_code == 200
        refused = await client.get("/ping", headers={"Authorization": "Bearer a.b.c"})
    assert refused.status_code == 429
    assert refused.json()["error"] == "rate_limited"


async def test_rate_0_turns_limiting_off() -> None:
    app, _, _ = limited_app(rate_limit_per_second=0)
    async with client_of(app) as client:
        statuses = {
            (await client.get("/ping", headers=bearer("erp-1"))).status_code for _ in range(50)
        }
    assert statuses == {200}
    assert len(app.state.rate_limiter) == 0


def test_settings_read_the_limits_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LODESTAR_MAX_BODY_BYTES", "1024")
    monkeypatch.setenv("LODESTAR_RATE_LIMIT_PER_SECOND", "2.5")
    monkeypatch.setenv("LODESTAR_RATE_LIMIT_BURST", "7")
    settings = ServiceSettings()
    assert (settings.max_body_bytes, settings.rate_limit_per_second) == (1024, 2.5)
    assert settings.rate_limit_burst == 7


def test_settings_default_to_16_mib_and_50_a_second_with_bursts_of_200(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in (
        "LODESTAR_MAX_BODY_BYTES",
        "LODESTAR_RATE_LIMIT_PER_SECOND",
        "LODESTAR_RATE_LIMIT_BURST",
    ):
        monkeypatch.delenv(name, raising=False)
    settings = ServiceSettings()
    assert settings.max_body_bytes == 16 * 1024 * 1024
    assert (settings.rate_limit_per_second, settings.rate_limit_burst) == (50, 200)


# Memory


def test_buckets_full_again_are_forgotten() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate=1, burst=3, clock=clock)
    for key in ("a", "b", "c"):
        assert limiter.acquire(key) == 0
    assert len(limiter) == 3
    # One token each was taken; after a second all three are full again.
    clock.advance(1)
    assert limiter.acquire("d") == 0
    assert len(limiter) == 1


def test_past_max_clients_the_least_recently_used_is_forgotten() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate=1, burst=1, max_clients=2, clock=clock)
    for key in ("a", "b", "c"):
        assert limiter.acquire(key) == 0
    assert len(limiter) == 2
    # "b" and "c" are remembered, in debt; "a" was dropped and starts full again.
    assert limiter.acquire("c") == 1
    assert limiter.acquire("a") == 0
    assert len(limiter) == 2


async def test_few_large_bodies_are_read_at_once_and_the_rest_wait_then_get_503(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Eight 16 MB pushes at once took ingest from 210 to 858 MB, and Python kept it."""
    monkeypatch.setattr(limits, "LARGE_BODY_BYTES", 10)
    monkeypatch.setattr(limits, "MAX_LARGE_BODIES", 2)
    monkeypatch.setattr(limits, "MAX_LARGE_BODIES_PER_CLIENT", 1)
    monkeypatch.setattr(limits, "LARGE_BODY_WAIT_SECONDS", 0.3)
    app, _, _ = limited_app(rate_limit_per_second=0)
    held = asyncio.Event()
    reading = asyncio.Event()

    @app.post("/hold")
    async def hold(request: Request) -> dict[str, int]:
        body = await request.body()
        reading.set()
        await held.wait()
        return {"bytes": len(body)}

    async with client_of(app) as client:
        first = asyncio.create_task(client.post("/hold", content=b"x" * 50, headers=bearer("a")))
        await reading.wait()
        # Small bodies never wait.
        assert (await client.post("/echo", content=b"tiny")).status_code == 200
        # One client reads one large body at a time here: its second waits, and in
        # vain while the first is read; another client takes the last turn.
        own = await client.post("/echo", content=b"y" * 50, headers=bearer("a"))
        assert own.status_code == 503 and own.headers["retry-after"] == "1", own.text
        # Told that its own turns are taken, not the process's.
        assert own.json()["detail"].startswith(
            "1 requests of this client of over 10 bytes are being read already"
        )
        # The body was not read: the connection ends with the answer.
        assert own.headers["connection"] == "close"
        reading.clear()
        second = asyncio.create_task(client.post("/hold", content=b"z" * 50, headers=bearer("b")))
        await reading.wait()
        waited = await client.post("/echo", content=b"w" * 50, headers=bearer("c"))
        assert waited.status_code == 503, waited.text
        assert waited.json()["error"] == "unavailable"
        assert waited.json()["detail"].startswith("2 requests of over 10 bytes")
        # One waiting when a turn ends gets it.
        third = asyncio.create_task(client.post("/echo", content=b"v" * 50, headers=bearer("c")))
        await asyncio.sleep(0.05)
        held.set()
        assert (await first).json() == {"bytes": 50}
        assert (await second).json() == {"bytes": 50}
        assert (await third).status_code == 200


async def test_a_large_body_of_no_valid_token_is_refused_unread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Four slow bodies of no one held every turn for as long as they trickled, and a
    body sent chunked was read however many were being read."""
    monkeypatch.setattr(limits, "LARGE_BODY_BYTES", 10)
    app, _, seen = limited_app(rate_limit_per_second=0)
    async with client_of(app) as client:
        forged = {"Authorization": f"Bearer {unsigned_token(client_id='a')}"}
        for headers in ({}, forged):
            refused = await client.post("/echo", content=b"x" * 50, headers=headers)
            assert refused.status_code == 401, refused.text
            assert refused.json()["error"] == "invalid_token"
            assert refused.headers["connection"] == "close"
        assert seen == []
        chunked = await client.post(
            "/echo", content=chunks(b"x" * 8, b"y" * 8), headers=bearer("a")
        )
        assert chunked.status_code == 411, chunked.text
        assert chunked.headers["connection"] == "close"
        assert chunked.json()["errors"] == [
            {"field": "header.Content-Length", "reason": "required"}
        ]
        small_chunked = await client.post("/echo", content=chunks(b"x" * 4), headers=bearer("a"))
        assert small_chunked.status_code == 200
