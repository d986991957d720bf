"""An external OpenID provider signing users in: its tokens are checked against its
own JWKS, the tenant read from its claim; the gateway's tokens keep working beside it."""

from __future__ import annotations

import secrets
import time
from typing import Any

import pytest
from fastapi import FastAPI
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

from devstack.embedded import free_port
from services.metrics.config import Settings
from shared.errors import Unauthenticated
from shared.service import token_verifier
from tests.conftest import TokenMinter, serve_app

IDP = "https://login.acme-idp.example/realms/lodestar"
TENANT_CLAIM = "https://lodestar.example/tenant"


def idp_token(key: RSAKey, **changes: Any) -> str:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": IDP,
        "sub": "user-42",
        "aud": "lodestar",
        "exp": now + 300,
        "iat": now,
        "jti": secrets.token_hex(8),
        # Providers name the client azp and list scopes as scp.
        "azp": "dashboard",
        "scp": ["kpi:read"],
        TENANT_CLAIM: "tn_seller",
    }
    claims.update(changes)
    return jwt.encode({"alg": "RS256", "typ": "JWT", "kid": key.kid}, claims, key)


async def test_an_external_providers_tokens_are_verified_with_its_keys(
    minter: TokenMinter,
) -> None:
    idp_key = RSAKey.generate_key(2048, parameters={"kid": "idp-1"})
    jwks = FastAPI()
    document = dict(KeySet([idp_key]).as_dict(private=False))

    @jwks.get("/certs")
    async def certs() -> dict[str, Any]:
        return document

    port = free_port()
    settings = Settings(
        oidc_issuer=IDP,
        oidc_jwks_url=f"http://127.0.0.1:{port}/certs",
        oidc_tenant_claim=TENANT_CLAIM,
        issuer=minter.issuer,
    )
    verifier = token_verifier(settings)
    async with serve_app(jwks, "127.0.0.1", port):
        principal = await verifier.verify(idp_token(idp_key))
        assert (principal.tenant_id, principal.client_id) == ("tn_seller", "dashboard")
        assert principal.scopes == {"kpi:read"}
        # Another key claiming the provider's issuer is refused.
        stranger = RSAKey.generate_key(2048, parameters={"kid": "idp-1"})
        with pytest.raises(Unauthenticated):
            await verifier.verify(idp_token(stranger))
        with pytest.raises(Unauthenticated, match="expired"):
            await verifier.verify(idp_token(idp_key, exp=int(time.time()) - 3600))
        with pytest.raises(Unauthenticated, match="audience"):
            await verifier.verify(idp_token(idp_key, aud="another-app"))
    # The gateway's own tokens still go to the gateway's keys, not the provider's.
    verifier.keys = minter.verifier().keys
    assert (await verifier.verify(minter.mint("tn_erp", ["ingest:write"]))).tenant_id == "tn_erp"
    # A plain-JWT typ is only accepted from the provider.
    with pytest.raises(Unauthenticated, match="type"):
        await verifier.verify(minter.mint("tn_erp", ["ingest:write"], header={"typ": "JWT"}))
