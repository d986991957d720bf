"""Access tokens for users (RFC 9068), signed like the client-credentials ones."""

from __future__ import annotations

import secrets
import time
from typing import Any

from joserfc import jwt

from services.gateway.oauth.signing import Signer
from shared.auth import ALGORITHM


def mint_access_token(
    signer: Signer,
    issuer: str,
    audience: str,
    ttl_seconds: int,
    subject: str,
    client_id: str,
    tenant_id: str | None,
    scope: str,
    extra: dict[str, Any] | None = None,
    jti: str | None = None,
) -> str:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": issuer,
        "sub": subject,
        "aud": audience,
        "exp": now + ttl_seconds,
        "iat": now,
        "nbf": now,
        "jti": jti or secrets.token_hex(16),
        "client_id": client_id,
        "scope": scope,
        # Null for no tenant, as in the client-credentials tokens.
        "tenant": tenant_id or None,
        **(extra or {}),
    }
    key = signer.current
    header = {"alg": ALGORITHM, "typ": "at+jwt", "kid": str(key.kid)}
    return jwt.encode(header, claims, key)


# The scope of an OpenID Connect sign-in: an ID token with the access token.
OPENID = "openid"
ID_TOKEN_CLAIMS = ("iss", "sub", "aud", "azp", "exp", "iat", "auth_time", "nonce", "tenant")


def mint_id_token(
    signer: Signer,
    issuer: str,
    ttl_seconds: int,
    subject: str,
    client_id: str,
    tenant_id: str,
    signed_in_at: int,
    nonce: str | None,
) -> str:
    """The ID token of an OpenID Connect sign-in (Core §2): who signed in, for which
    client, when; the client checks its ``nonce``. It grants nothing: services take
    only access tokens (``typ: at+jwt``)."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": issuer,
        "sub": subject,
        "aud": client_id,
        "azp": client_id,
        "exp": now + ttl_seconds,
        "iat": now,
        "auth_time": signed_in_at,
        "tenant": tenant_id,
    }
    if nonce:
        claims["nonce"] = nonce
    key = signer.current
    return jwt.encode({"alg": ALGORITHM, "typ": "JWT", "kid": str(key.kid)}, claims, key)
