"""User passwords: argon2id, memory-hard, parameters carried in each stored hash."""

from __future__ import annotations

import asyncio
import weakref
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

# RFC 9106's second recommended option (64 MiB, 3 passes), in a thread: a hash takes
# tens of milliseconds and must not hold the event loop.
_hasher = PasswordHasher(time_cost=3, memory_cost=64 * 1024, parallelism=4)
# Compared against when the e-mail is unknown, so timing does not reveal accounts.
_DECOY = _hasher.hash("lodestar-decoy-password")
MIN_PASSWORD_LENGTH = 12


# A hash takes 64 MiB and four threads for tens of milliseconds: one at a time, or
# made-up sign-ins sent fast from one client slowed every tenant's requests tenfold.
MAX_CONCURRENT_HASHES = 1
# How long a sign-in waits for its turn before it is told to try again.
SIGN_IN_WAIT_SECONDS = 2.0
# How many sign-ins of one address may be checked or waiting at once: one address
# sending made-up sign-ins fast holds this many places in the line, not every place, so
# other addresses' users still get their turn; two, so that two people behind one
# office's address signing in together both pass.
PLACES_PER_ADDRESS = 2


@dataclass
class _Line:
    """One event loop's line of password checks: the turn, and each address's places."""

    turn: asyncio.Semaphore = field(
        default_factory=lambda: asyncio.Semaphore(MAX_CONCURRENT_HASHES)
    )
    places: Counter[str] = field(default_factory=Counter)


_lines: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Line] = weakref.WeakKeyDictionary()


class SignInsBusy(Exception):
    """Too many password checks are waiting: the sign-in is to be tried again."""


def _line() -> _Line:
    return _lines.setdefault(asyncio.get_running_loop(), _Line())


@contextmanager
def _place_of(caller: str | None) -> Iterator[None]:
    """A place in the line for the ``caller``'s address; :class:`SignInsBusy` when it
    holds ``PLACES_PER_ADDRESS`` already."""
    places = _line().places
    if caller is None:
        yield
        return
    if places[caller] >= PLACES_PER_ADDRESS:
        raise SignInsBusy
    places[caller] += 1
    try:
        yield
    finally:
        places[caller] -= 1
        if not places[caller]:
            del places[caller]


async def hash_password(password: str) -> str:
    async with _line().turn:
        return await asyncio.to_thread(_hasher.hash, password)


async def verify_password(password: str, stored: str | None, caller: str | None = None) -> bool:
    """Whether the password is the stored hash's; :class:`SignInsBusy` when no turn
    came within ``SIGN_IN_WAIT_SECONDS``, or at once when the ``caller``'s address has
    ``PLACES_PER_ADDRESS`` sign-ins checked or waiting already."""

    def check() -> bool:
        try:
            return _hasher.verify(stored or _DECOY, password) and stored is not None
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    turn = _line().turn
    with _place_of(caller):
        try:
            async with asyncio.timeout(SIGN_IN_WAIT_SECONDS):
                await turn.acquire()
        except TimeoutError:
            raise SignInsBusy from None
        try:
            return await asyncio.to_thread(check)
        finally:
            turn.release()
