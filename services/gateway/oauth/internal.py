"""Short-lived tokens the gateway signs for its own calls to the other services."""

from __future__ import annotations

from services.gateway.config import Settings
from services.gateway.oauth.minting import mint_access_token
from services.gateway.oauth.signing import Signer

INTERNAL_CLIENT_ID = "lodestar-gateway"
INTERNAL_TTL_SECONDS = 60


def internal_token(
    signer: Signer,
    settings: Settings,
    tenant_id: str,
    scopes: list[str],
    ttl_seconds: int = INTERNAL_TTL_SECONDS,
) -> str:
    """An access token acting for ``tenant_id`` with ``scopes``, valid ``ttl_seconds``:
    every service verifies it like any other (same keys, issuer and audience)."""
    return mint_access_token(
        signer,
        settings.effective_issuer,
        settings.audience,
        ttl_seconds,
        subject=INTERNAL_CLIENT_ID,
        # Rate limits go by client id: one tenant's export never spends another's budget.
        client_id=f"{INTERNAL_CLIENT_ID}:{tenant_id}",
        tenant_id=tenant_id,
        scope=" ".join(sorted(scopes)),
    )
