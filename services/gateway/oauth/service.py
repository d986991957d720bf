"""Issuing access tokens: client authentication, scope checks, RFC 9068 JWTs."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any

from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey
from sqlalchemy.ext.asyncio import AsyncSession

from services.gateway.oauth.errors import OAuthError
from services.gateway.oauth.models import OAuthClient, SigningKey
from services.gateway.oauth.repository import ClientRepository, KeyRepository
from services.gateway.oauth.secrets import hash_secret, verify_secret
from shared.auth import ALGORITHM
from shared.scopes import ALL_SCOPES


@dataclass
class Signer:
    """The gateway's signing keys: the newest signs, all unretired ones are published."""

    keys: list[RSAKey]

    @property
    def current(self) -> RSAKey:
        return self.keys[0]

    def jwks(self) -> dict[str, Any]:
        document: dict[str, Any] = dict(KeySet(list(self.keys)).as_dict(private=False))
        for key in document["keys"]:
            key.setdefault("use", "sig")
            key.setdefault("alg", ALGORITHM)
        return document

    def sign(self, claims: dict[str, Any]) -> str:
        header = {"alg": ALGORITHM, "typ": "at+jwt", "kid": self.current.kid}
        return jwt.encode(header, claims, self.current, algorithms=[ALGORITHM])


async def load_signer(session: AsyncSession) -> Signer:
    """The stored signing keys; the first start creates one and keeps it."""
    repository = KeyRepository(session)
    await repository.lock()
    stored = await repository.active()
    if not stored:
        key = RSAKey.generate_key(2048, parameters={"use": "sig", "alg": ALGORITHM}, auto_kid=True)
        row = SigningKey(kid=str(key.kid), private_jwk=key.as_dict(private=True))
        await repository.add(row)
        stored = [row]
    return Signer([RSAKey.import_key(row.private_jwk) for row in stored])


async def ensure_platform_admin(session: AsyncSession, client_id: str, client_secret: str) -> None:
    """The platform-admin client from the environment exists with that secret."""
    repository = ClientRepository(session)
    existing = await repository.admin_secret_hash(client_id)
    if existing is not None and verify_secret(client_secret, existing):
        secret_hash = existing
    else:
        secret_hash = hash_secret(client_secret)
    await repository.upsert_platform_admin(client_id, secret_hash, list(ALL_SCOPES))


@dataclass(frozen=True)
class ClientCredentials:
    client_id: str
    client_secret: str
    used_basic: bool


async def authenticate_client(session: AsyncSession, credentials: ClientCredentials) -> OAuthClient:
    client = await ClientRepository(session).get_active(credentials.client_id)
    # The same answer whether the client is unknown or the secret wrong: no probing.
    if client is None or not verify_secret(credentials.client_secret, client.secret_hash):
        raise OAuthError(
            "invalid_client", "client authentication failed", 401, basic=credentials.used_basic
        )
    return client


def granted_scopes(client: OAuthClient, requested: str | None) -> list[str]:
    """The scopes a token gets: those asked for (all of the client's when none are)."""
    if requested is None or not requested.strip():
        return sorted(client.scopes)
    asked = requested.split()
    unknown = [s for s in asked if s not in client.scopes]
    if unknown:
        raise OAuthError("invalid_scope", f"scope not allowed for this client: {' '.join(unknown)}")
    return sorted(set(asked))


def issue_token(
    signer: Signer, client: OAuthClient, scopes: list[str], issuer: str, audience: str, ttl: int
) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": issuer,
        "sub": client.client_id,
        "aud": audience,
        "exp": now + ttl,
        "iat": now,
        "nbf": now,
        "jti": secrets.token_hex(16),
        "client_id": client.client_id,
        "scope": " ".join(scopes),
    }
    if client.tenant_id:
        claims["tenant"] = client.tenant_id
    return {
        "access_token": signer.sign(claims),
        "token_type": "Bearer",
        "expires_in": ttl,
        "scope": " ".join(scopes),
    }
