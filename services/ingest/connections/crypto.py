"""Platform credentials at rest, sealed with ``LODESTAR_INGEST_CREDENTIALS_KEY``; only
ingest ever opens them."""

from __future__ import annotations

from typing import Any

from shared.errors import UpstreamUnavailable
from shared.sealing import SealedWithAnotherKey, Sealer

CREDENTIALS_KEY_VARIABLE = "LODESTAR_INGEST_CREDENTIALS_KEY"


class CredentialBox:
    def __init__(self, key: str) -> None:
        self._sealer = Sealer(key, CREDENTIALS_KEY_VARIABLE)

    @property
    def ready(self) -> bool:
        return self._sealer.ready

    def seal(self, credentials: dict[str, Any]) -> bytes:
        if not self._sealer.ready:
            raise UpstreamUnavailable(
                f"platform credentials cannot be stored: {CREDENTIALS_KEY_VARIABLE} is unset"
            )
        return self._sealer.seal(credentials)

    def open(self, sealed: bytes) -> dict[str, Any]:
        if not self._sealer.ready:
            raise UpstreamUnavailable("platform credentials cannot be read: no key")
        try:
            return self._sealer.open(sealed)
        except SealedWithAnotherKey:
            raise UpstreamUnavailable("platform credentials were sealed with another key") from None
