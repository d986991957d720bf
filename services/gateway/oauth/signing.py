"""The gateway's token signing keys: RSA 2048, kept in the database, loaded at start."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from joserfc.jwk import KeySet, RSAKey
from sqlalchemy.ext.asyncio import AsyncSession

from services.gateway.oauth.models import SigningKey
from services.gateway.oauth.repository import KeyRepository
from shared.auth import ALGORITHM

KEY_SIZE = 2048


@dataclass
class Signer:
    """The unretired signing keys, newest first: the newest signs, all are published."""

    keys: list[RSAKey]

    @property
    def current(self) -> RSAKey:
        return self.keys[0]

    def jwks(self) -> dict[str, Any]:
        """The public JWKS (never a private member of a key)."""
        document: dict[str, Any] = dict(KeySet(list(self.keys)).as_dict(private=False))
        for key in document["keys"]:
            key.setdefault("use", "sig")
            key.setdefault("alg", ALGORITHM)
        return document


async def load_signer(session: AsyncSession) -> Signer:
    """The stored signing keys; the first start creates one and keeps it.

    An advisory lock serialises the check and the insert, so replicas starting at
    once end with one key between them.
    """
    repository = KeyRepository(session)
    await repository.lock()
    stored = await repository.active()
    if not stored:
        key = RSAKey.generate_key(
            KEY_SIZE, parameters={"use": "sig", "alg": ALGORITHM}, auto_kid=True
        )
        row = SigningKey(kid=str(key.kid), private_jwk=key.as_dict(private=True))
        await repository.add(row)
        stored = [row]
    return Signer([RSAKey.import_key(row.private_jwk) for row in stored])
