"""Platform credentials at rest: Fernet (AES-128-CBC with HMAC-SHA256), one key per
deployment from ``LODESTAR_INGEST_CREDENTIALS_KEY``; only ingest ever decrypts them."""

from __future__ import annotations

from typing import Any

import orjson
from cryptography.fernet import Fernet, InvalidToken

from shared.errors import UpstreamUnavailable


class CredentialBox:
    def __init__(self, key: str) -> None:
        self._fernet = Fernet(key.encode()) if key else None

    @property
    def ready(self) -> bool:
        return self._fernet is not None

    def seal(self, credentials: dict[str, Any]) -> bytes:
        if self._fernet is None:
            raise UpstreamUnavailable(
                "platform credentials cannot be stored: LODESTAR_INGEST_CREDENTIALS_KEY is unset"
            )
        return self._fernet.encrypt(orjson.dumps(credentials))

    def open(self, sealed: bytes) -> dict[str, Any]:
        if self._fernet is None:
            raise UpstreamUnavailable("platform credentials cannot be read: no key")
        try:
            opened: dict[str, Any] = orjson.loads(self._fernet.decrypt(sealed))
        except InvalidToken:
            raise UpstreamUnavailable("platform credentials were sealed with another key") from None
        return opened
