"""Secrets at rest: Fernet (AES-128-CBC with HMAC-SHA256) under a key of the
deployment's, given in an environment variable, for the JSON values a database dump
must not reveal (platform credentials, token signing keys).

The variable may name several keys, comma-separated, to replace one: the first seals,
every one opens, and the service seals again under the first, when it starts, what an
older one sealed. Once every replica has started so, the older keys can go.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import orjson
from cryptography.fernet import Fernet, InvalidToken, MultiFernet

# 32 bytes in url-safe base64: 43 characters and the padding.
_FERNET_KEY = re.compile(r"[A-Za-z0-9_-]{43}=")


class SealedWithAnotherKey(Exception):
    """A sealed value none of this deployment's keys opens."""


class Sealer:
    """Seals and opens with the Fernet keys of ``variable`` (empty: not set)."""

    def __init__(self, keys: str, variable: str) -> None:
        self.variable = variable
        fernets = []
        for place, key in enumerate((key.strip() for key in keys.split(",") if key.strip()), 1):
            try:
                # Fernet reads base64 leniently: "KEY1;KEY2" or a stray character would
                # pass as KEY1 alone, and the second key be silently dropped.
                if not _FERNET_KEY.fullmatch(key):
                    raise ValueError("not 44 url-safe base64 characters")
                fernets.append(Fernet(key.encode()))
            except ValueError:
                # Never the value: this ends up in logs, and a mistyped key is nearly
                # the key.
                raise ValueError(
                    f"{variable}: the {_ordinal(place)} key must be a Fernet key, 32 "
                    "url-safe base64-encoded bytes (python -c 'from cryptography.fernet "
                    "import Fernet; print(Fernet.generate_key().decode())'), or several, "
                    "comma-separated, the newest first"
                ) from None
        self._fernet = MultiFernet(fernets) if fernets else None
        # Older keys are given: what they sealed is to be sealed again under the first.
        self.replacing = len(fernets) > 1

    @property
    def ready(self) -> bool:
        return self._fernet is not None

    def seal(self, value: dict[str, Any]) -> bytes:
        if self._fernet is None:
            raise RuntimeError(f"nothing can be sealed: {self.variable} is unset")
        return self._fernet.encrypt(orjson.dumps(value))

    def open(self, sealed: bytes) -> dict[str, Any]:
        opened: dict[str, Any] = orjson.loads(self._sealed_with(sealed, MultiFernet.decrypt))
        return opened

    def sealed_again(self, sealed: bytes) -> bytes:
        """``sealed`` under the first key, whichever of the keys sealed it."""
        return self._sealed_with(sealed, MultiFernet.rotate)

    def _sealed_with(self, sealed: bytes, use: Callable[[MultiFernet, bytes], bytes]) -> bytes:
        """``use`` of the keys on ``sealed``; SealedWithAnotherKey when none opens it."""
        if self._fernet is None:
            raise SealedWithAnotherKey(f"sealed values cannot be read: {self.variable} is unset")
        try:
            return use(self._fernet, sealed)
        except InvalidToken:
            raise SealedWithAnotherKey(
                f"a value was sealed with a key other than {self.variable}'s"
            ) from None


def _ordinal(place: int) -> str:
    suffix = {1: "st", 2: "nd", 3: "rd"}.get(place if place < 20 else place % 10, "th")
    return f"{place}{suffix}"
