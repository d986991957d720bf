"""Revoked tokens as a service reads them from the gateway."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx
import pytest
from joserfc.jwk import KeySet, RSAKey

from shared import revocations as revocations_module
from shared.auth import UNKNOWN_KEY_FETCH_SECONDS, KeyCache, TokenVerifier
from shared.errors import Unauthenticated, UpstreamUnavailable
from shared.revocations import REVOKED_TOKENS_PATH, GatewayRevocations, revocation_digest
from tests.conftest import TokenMinter


async def test_a_gateway_away_leaves_the_last_list_in_force_and_is_said_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    listed = [revocation_digest("jti-1"), revocation_digest("jti-2")]
    answers = [httpx.Response(200, json={"revoked": listed})]

    def gateway(request: httpx.Request) -> httpx.Response:
        assert request.url.path == REVOKED_TOKENS_PATH
        if answers:
            return answers.pop(0)
        raise httpx.ConnectError("gateway away")

    client = httpx.AsyncClient(transport=httpx.MockTransport(gateway))
    revocations = GatewayRevocations(
        "http://gateway/", client, reload_seconds=0.01, away_seconds=0.03
    )
    with caplog.at_level(logging.WARNING, logger="shared.revocations"):
        await revocations.start()
        await asyncio.sleep(0.1)
        await revocations.stop()
    await client.aclose()
    assert "jti-1" in revocations and "jti-2" in revocations and "jti-3" not in revocations
    warnings = [r.getMessage() for r in caplog.records if r.name == "shared.revocations"]
    assert warnings == ["revoked tokens cannot be read from the gateway: gateway away"]


async def test_the_list_held_is_asked_for_only_if_it_changed() -> None:
    """Every service asks every second: a list the gateway confirms unchanged (304) is
    kept, not sent again."""
    held: list[str | None] = []
    answers = iter(
        [
            httpx.Response(200, json={"revoked": [revocation_digest("jti-1")]}, headers={"ETag": '"v1"'}),
            httpx.Response(304, headers={"ETag": '"v1"'}),
            httpx.Response(200, json={"revoked": [revocation_digest("jti-2")]}, headers={"ETag": '"v2"'}),
        ]
    )  # fmt: skip

    def gateway(request: httpx.Request) -> httpx.Response:
        held.append(request.headers.get("if-none-match"))
        return next(answers)

    client = httpx.AsyncClient(transport=httpx.MockTransport(gateway))
    revocations = GatewayRevocations("http://gateway", client)
    await revocations.load()
    await revocations.load()
    assert "jti-1" in revocations
    await revocations.load()
    await client.aclose()
    assert "jti-2" in revocations and "jti-1" not in revocations
    assert held == [None, '"v1"', '"v1"']


async def test_an_answer_that_is_no_list_keeps_the_last_one() -> None:
    answers = iter(
        [
            httpx.Response(200, json={"revoked": [revocation_digest("jti-1")]}),
            httpx.Response(503, json={"error": "unavailable"}),
            httpx.Response(200, json={"something": "else"}),
        ]
    )
    client = httpx.AsyncClient(transport=httpx.MockTransport(lambda _: next(answers)))
    revocations = GatewayRevocations("http://gateway", client)
    await revocations.load()
    for _ in range(2):
        with pytest.raises((httpx.HTTPStatusError, KeyError)):
            await revocations.load()
    await client.aclose()
    assert "jti-1" in revocations


async def test_a_gateway_not_listening_yet_is_not_worth_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Services often start before the gateway: a few failed reads say nothing."""

    def away(_: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("not listening yet")

    client = httpx.AsyncClient(transport=httpx.MockTransport(away))
    revocations = GatewayRevocations("http://gateway", client, reload_seconds=0.01)
    with caplog.at_level(logging.WARNING, logger="shared.revocations"):
        await revocations.start()
        await asyncio.sleep(0.1)
        await revocations.stop()
    await client.aclose()
    assert not [r for r in caplog.records if r.name == "shared.revocations"]


async def test_the_signing_keys_listed_beside_revocations_reach_the_key_cache() -> None:
    """A key retired at once (a rotation for a leaked key) stops counting at a
    service with its next read of the list, a second at most; a new one is fetched
    the first time a token names it, however recent the last fetch."""
    old, new = (RSAKey.generate_key(2048, parameters={"kid": kid}) for kid in ("old", "new"))
    published = [old]
    fetches = 0

    async def jwks(_: str) -> dict[str, Any]:
        nonlocal fetches
        fetches += 1
        return dict(KeySet(list(published)).as_dict(private=False))

    cache = KeyCache("http://gateway/.well-known/jwks.json", fetch=jwks)
    assert (await cache.key_for("old")).kid == "old" and await cache.holds("old")
    answer = {"revoked": [], "signing_keys": ["new"]}
    client = httpx.AsyncClient(
        transport=httpx.MockTransport(lambda r: httpx.Response(200, json=answer))
    )
    revocations = GatewayRevocations("http://gateway/", client, on_signing_keys=cache.published)
    await revocations.load()
    await client.aclose()
    # The old key no longer counts, though its fetch is recent and the JWKS cached.
    assert not await cache.holds("old")
    with pytest.raises(Unauthenticated):
        await cache.key_for("old")
    # The new one, announced, is fetched at once (within the 2 s between fetches).
    published[:] = [new]
    assert (await cache.key_for("new")).kid == "new"
    assert fetches == 2
    # A key not announced yet is fetched too, but not more than four times a second:
    # forged key ids do not make every request a fetch.
    with pytest.raises(Unauthenticated):
        await cache.key_for("made-up")
    assert fetches == 2
    # A rotation "at once" signs with the new key before the next list says so, and a
    # client asks a token at once: it is taken, and the key it replaced no longer is.
    newer = RSAKey.generate_key(2048, parameters={"kid": "newer"})
    published[:] = [newer]
    await asyncio.sleep(UNKNOWN_KEY_FETCH_SECONDS)
    assert (await cache.key_for("newer")).kid == "newer"
    assert fetches == 3
    assert not await cache.holds("new")
    with pytest.raises(Unauthenticated):
        await cache.key_for("made-up")
    assert fetches == 3


async def test_no_token_is_taken_before_the_revocations_are_read(minter: TokenMinter) -> None:
    """A service restarting with the gateway took, for half a second, tokens and
    erased tenants' writes the gateway refuses: until its first read it takes none."""
    listed = httpx.Response(200, json={"revoked": [], "erased": [revocation_digest("tn_gone")]})
    answers: list[httpx.Response | None] = [None, listed]

    def gateway(request: httpx.Request) -> httpx.Response:
        answer = answers.pop(0)
        if answer is None:
            raise httpx.ConnectError("gateway restarting")
        return answer

    client = httpx.AsyncClient(transport=httpx.MockTransport(gateway))
    revocations = GatewayRevocations("http://gateway", client)
    verifier = TokenVerifier(
        minter.verifier().keys, minter.issuer, minter.audience, revoked=revocations
    )
    token = minter.mint("tn_1", ["kpi:read"])
    with pytest.raises(httpx.ConnectError):
        await revocations.load()
    with pytest.raises(UpstreamUnavailable) as waiting:
        await verifier.verify(token)
    assert waiting.value.headers == {"Retry-After": "1"}
    await revocations.load()
    await client.aclose()
    assert (await verifier.verify(token)).tenant_id == "tn_1"
    assert revocations.erased("tn_gone") and not revocations.erased("tn_1")


async def test_a_list_gone_stale_takes_no_token_until_it_is_read_again(
    minter: TokenMinter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The gateway away, a token revoked meanwhile was taken at a service's own port for
    as long as it stayed away: past a few seconds none is taken."""
    monkeypatch.setattr(revocations_module, "STALE_SECONDS", 0.05)
    client = httpx.AsyncClient(
        transport=httpx.MockTransport(lambda _: httpx.Response(200, json={"revoked": []}))
    )
    revocations = GatewayRevocations("http://gateway", client)
    verifier = TokenVerifier(
        minter.verifier().keys, minter.issuer, minter.audience, revoked=revocations
    )
    token = minter.mint("tn_1", ["kpi:read"])
    await revocations.load()
    assert (await verifier.verify(token)).tenant_id == "tn_1"
    await asyncio.sleep(0.1)
    assert revocations.unknown == "not read from the gateway for 0 s"
    with pytest.raises(UpstreamUnavailable) as stale:
        await verifier.verify(token)
    assert stale.value.headers == {"Retry-After": "1"}
    assert "list of revoked tokens is not read from the gateway for" in stale.value.detail
    await revocations.load()
    await client.aclose()
    assert revocations.unknown is None
    assert (await verifier.verify(token)).tenant_id == "tn_1"
