"""Token checks every service runs: what passes and each way a token is refused."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import pytest
from joserfc.jwk import KeySet, RSAKey

from shared.auth import KeyCache, TokenVerifier
from shared.errors import Forbidden, InsufficientScope, Unauthenticated
from tests.conftest import TokenMinter


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unsigned(header: dict[str, Any], claims: dict[str, Any]) -> str:
    return f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"


async def test_valid_token_gives_tenant_scopes_and_client(minter: TokenMinter) -> None:
    principal = await minter.verifier().verify(minter.mint("t1", ["kpi:read", "ingest:write"]))
    assert principal.tenant_id == "t1"
    assert principal.scopes == {"kpi:read", "ingest:write"}
    assert principal.client_id == "test-client"
    principal.require("kpi:read")
    with pytest.raises(InsufficientScope) as refused:
        principal.require("targets:write")
    assert refused.value.status == 403
    assert 'scope="targets:write"' in refused.value.headers["WWW-Authenticate"]


async def test_a_token_too_large_to_verify_is_told_so(minter: TokenMinter) -> None:
    """A token past the verifier's 128,000 bytes was "token signature is invalid"."""
    huge = minter.mint("t1", ["kpi:read"], limits={"stores": ["x" * 250] * 600})
    with pytest.raises(Unauthenticated, match="token is too large"):
        await minter.verifier().verify(huge)


@pytest.mark.parametrize("tenant", [None, "", "absent"])
async def test_null_empty_or_absent_tenant_is_no_tenant(minter: TokenMinter, tenant: Any) -> None:
    claims = {} if tenant == "absent" else {"tenant": tenant}
    principal = await minter.verifier().verify(minter.mint(None, ["kpi:read"], **claims))
    assert principal.tenant_id is None
    with pytest.raises(Forbidden):
        principal.require_tenant()


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"iss": "https://evil.example"}, "issuer"),
        ({"aud": "someone-else"}, "audience"),
        ({"exp": int(time.time()) - 3600}, "expired"),
        ({"nbf": int(time.time()) + 3600, "iat": int(time.time()) + 3600}, "not valid yet"),
    ],
)
async def test_token_with_bad_claims_is_refused(
    minter: TokenMinter, claims: dict[str, Any], reason: str
) -> None:
    with pytest.raises(Unauthenticated) as refused:
        await minter.verifier().verify(minter.mint("t1", ["kpi:read"], **claims))
    assert reason in refused.value.detail
    assert refused.value.status == 401
    assert 'error="invalid_token"' in refused.value.headers["WWW-Authenticate"]


async def test_alg_none_is_refused(minter: TokenMinter) -> None:
    good = minter.mint("t1", ["kpi:read"])
    claims = json.loads(base64.urlsafe_b64decode(good.split(".")[1] + "=="))
    forged = _unsigned({"alg": "none", "typ": "at+jwt", "kid": minter.key.kid}, claims) + "."
    with pytest.raises(Unauthenticated, match="RS256"):
        await minter.verifier().verify(forged)


async def test_hs256_signed_with_the_public_key_is_refused(minter: TokenMinter) -> None:
    good = minter.mint("t1", ["kpi:read"])
    claims = json.loads(base64.urlsafe_b64decode(good.split(".")[1] + "=="))
    public_pem = minter.key.as_pem(private=False)
    signing_input = _unsigned({"alg": "HS256", "typ": "at+jwt", "kid": minter.key.kid}, claims)
    signature = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    with pytest.raises(Unauthenticated, match="RS256"):
        await minter.verifier().verify(f"{signing_input}.{_b64(signature)}")


async def test_tampered_payload_is_refused(minter: TokenMinter) -> None:
    header, _, signature = minter.mint("t1", ["kpi:read"]).split(".")
    claims = {
        "iss": minter.issuer,
        "sub": "x",
        "aud": minter.audience,
        "exp": int(time.time()) + 600,
        "iat": int(time.time()),
        "jti": "j",
        "client_id": "x",
        "scope": "platform:admin",
        "tenant": "someone-else",
    }
    forged = f"{header}.{_b64(json.dumps(claims).encode())}.{signature}"
    with pytest.raises(Unauthenticated, match="signature"):
        await minter.verifier().verify(forged)


async def test_token_of_another_key_is_refused(minter: TokenMinter) -> None:
    stranger = TokenMinter(RSAKey.generate_key(2048, parameters={"kid": str(minter.key.kid)}))
    with pytest.raises(Unauthenticated, match="signature"):
        await minter.verifier().verify(stranger.mint("t1", ["kpi:read"]))


async def test_wrong_token_type_and_garbage_are_refused(minter: TokenMinter) -> None:
    with pytest.raises(Unauthenticated, match="at\\+jwt"):
        await minter.verifier().verify(minter.mint("t1", [], header={"typ": "JWT"}))
    with pytest.raises(Unauthenticated, match="malformed"):
        await minter.verifier().verify("not-a-token")


async def test_unknown_kid_refetches_the_key_set_once() -> None:
    old = RSAKey.generate_key(2048, parameters={"kid": "old"})
    new = RSAKey.generate_key(2048, parameters={"kid": "new"})
    published: list[Any] = [old]
    fetches = []

    async def fetch(url: str) -> dict[str, Any]:
        fetches.append(url)
        return dict(KeySet(list(published)).as_dict(private=False))

    verifier = TokenVerifier(KeyCache("jwks", fetch=fetch), "http://issuer.test", "lodestar")
    await verifier.verify(TokenMinter(old).mint("t", []))
    assert len(fetches) == 1
    # The issuer rotates its key; a token with the new kid triggers one refresh.
    published.append(new)
    verifier.keys._fetched_at = 0.0
    principal = await verifier.verify(TokenMinter(new).mint("t", ["kpi:read"]))
    assert principal.scopes == {"kpi:read"}
    assert len(fetches) == 2
    # A made-up kid right after does not hammer the JWKS endpoint.
    with pytest.raises(Unauthenticated, match="unknown key"):
        await verifier.verify(
            TokenMinter(RSAKey.generate_key(2048, parameters={"kid": "x"})).mint("t", [])
        )
    assert len(fetches) == 2


async def test_a_token_checked_before_still_expires(
    minter: TokenMinter, monkeypatch: pytest.MonkeyPatch
) -> None:
    verifier = minter.verifier()
    token = minter.mint("t1", ["kpi:read"])
    first = await verifier.verify(token)
    again = await verifier.verify(token)
    assert again == first
    # Its signature is not checked twice, but its expiry is checked at every use.
    later = time.time() + 3600
    monkeypatch.setattr("shared.auth.time.time", lambda: later)
    with pytest.raises(Unauthenticated, match="expired"):
        await verifier.verify(token)
