"""User passwords: argon2id, memory-hard, parameters carried in each stored hash."""

from __future__ import annotations

import asyncio

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

# RFC 9106's second recommended option (64 MiB, 3 passes), in a thread: a hash takes
# tens of milliseconds and must not hold the event loop.
_hasher = PasswordHasher(time_cost=3, memory_cost=64 * 1024, parallelism=4)
# Compared against when the e-mail is unknown, so timing does not reveal accounts.
_DECOY = _hasher.hash("lodestar-decoy-password")
MIN_PASSWORD_LENGTH = 12


async def hash_password(password: str) -> str:
    return await asyncio.to_thread(_hasher.hash, password)


async def verify_password(password: str, stored: str | None) -> bool:
    def check() -> bool:
        try:
            return _hasher.verify(stored or _DECOY, password) and stored is not None
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    return await asyncio.to_thread(check)
