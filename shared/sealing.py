"""Secrets at rest: Fernet (AES-128-CBC with HMAC-SHA256) under one key per deployment,
given in an environment variable, for the JSON values a database dump must not reveal
(platform credentials, token signing keys)."""

from __future__ import annotations

from typing import Any

import orjson
from cryptography.fernet import Fernet, InvalidToken


class SealedWithAnotherKey(Exception):
    """A sealed value this deployment's key does not open."""


class Sealer:
    """Seals and opens with the Fernet key of ``variable`` (empty: not set)."""

    def __init__(self, key: str, variable: str) -> None:
        self.variable = variable
        try:
            self._fernet = Fernet(key.strip().encode()) if key.strip() else None
        except ValueError:
            raise ValueError(
                f"{variable}: must be a Fernet key, 32 url-safe base64-encoded bytes "
                "(python -c 'from cryptography.fernet import Fernet; "
                "print(Fernet.generate_key().decode())')"
            ) from None

    @property
    def ready(self) -> bool:
        return self._fernet is not None

    def seal(self, value: dict[str, Any]) -> bytes:
        if self._fernet is None:
            raise RuntimeError(f"nothing can be sealed: {self.variable} is unset")
        return self._fernet.encrypt(orjson.dumps(value))

    def open(self, sealed: bytes) -> dict[str, Any]:
        if self._fernet is None:
            raise SealedWithAnotherKey(f"sealed values cannot be read: {self.variable} is unset")
        try:
            opened: dict[str, Any] = orjson.loads(self._fernet.decrypt(sealed))
        except InvalidToken:
            raise SealedWithAnotherKey(
                f"a value was sealed with a key other than {self.variable}'s"
            ) from None
        return opened
