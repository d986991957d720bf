"""The gateway's token signing keys: RSA 2048, kept in the database.

A rotation (``POST /v1/signing-keys``) adds a key that is published at once and signs
``PUBLISH_AHEAD`` later, so that whoever caches the JWKS for its max-age knows the key
before it meets a token signed with it. Once a newer key has signed for longer than a
token lives, the keys before it are retired: no token they signed is still valid, and
they leave the JWKS. A rotation ``immediately`` (a key feared leaked) signs with the new
key at once and retires every other one, so every token signed before it is refused.
Every gateway reads the keys again every ``RELOAD_SECONDS``.

With ``LODESTAR_GATEWAY_SIGNING_KEYS_KEY`` set, a private key is stored sealed
(``{"sealed": "<Fernet token>"}``), and a gateway starting with the key set seals the
keys stored before it was: a database dump then signs no token.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from joserfc.jwk import KeySet, RSAKey
from sqlalchemy.ext.asyncio import AsyncSession

from services.gateway.config import SIGNING_KEYS_KEY_VARIABLE
from services.gateway.oauth.models import SigningKey
from services.gateway.oauth.repository import KeyRepository
from shared.auth import ALGORITHM
from shared.db import Database
from shared.errors import UpstreamUnavailable
from shared.sealing import SealedWithAnotherKey, Sealer
from shared.tasks import every, stop_task
from shared.time import utcnow

log = logging.getLogger(__name__)

KEY_SIZE = 2048
# Twice the JWKS answer's max-age (300 s), with the time every gateway takes to read it.
PUBLISH_AHEAD = timedelta(minutes=10)
RELOAD_SECONDS = 30.0
# Past the longest a token lives: clocks differ, and a gateway reads keys late.
RETIRE_LEEWAY = timedelta(minutes=5)
# The member a sealed key's stored JWK has instead of the key's own.
SEALED = "sealed"


class UnreadableSigningKeys(RuntimeError):
    """Stored keys this gateway cannot open: the gateway cannot start."""


def _unsealed() -> Sealer:
    return Sealer("", SIGNING_KEYS_KEY_VARIABLE)


def _stored(key: RSAKey, sealer: Sealer) -> dict[str, Any]:
    private: dict[str, Any] = dict(key.as_dict(private=True))
    return {SEALED: sealer.seal(private).decode()} if sealer.ready else private


def _token(row: SigningKey) -> bytes:
    """The Fernet token a sealed key is stored as."""
    return str(row.private_jwk[SEALED]).encode()


def _sealed_again(row: SigningKey, sealer: Sealer) -> dict[str, Any]:
    """The row's sealed key under the first of the keys; a retired key none of them
    opens is left as it is (it is never read again)."""
    try:
        return {SEALED: sealer.sealed_again(_token(row)).decode()}
    except SealedWithAnotherKey:
        if row.retired_at is None:
            raise _unreadable(row, sealer) from None
        return row.private_jwk


def _unreadable(row: SigningKey, sealer: Sealer) -> UnreadableSigningKeys:
    return UnreadableSigningKeys(
        f"the token signing key {row.kid} cannot be opened: no key of {sealer.variable} "
        "sealed it; start the gateway with the key that did"
    )


def _opened(row: SigningKey, sealer: Sealer) -> RSAKey:
    stored = row.private_jwk
    if SEALED not in stored:
        return RSAKey.import_key(stored)
    try:
        return RSAKey.import_key(sealer.open(_token(row)))
    except SealedWithAnotherKey:
        raise _unreadable(row, sealer) from None


@dataclass
class Signer:
    """The unretired signing keys, newest start first: the newest started signs, all
    are published."""

    keys: list[RSAKey]
    # When each key starts to sign, in the same order.
    starts: list[datetime]
    # Opens the stored keys that are sealed.
    sealer: Sealer = field(default_factory=_unsealed)

    @property
    def current(self) -> RSAKey:
        if not self.keys:
            # Every unretired key is sealed under a key this gateway lacks: signing with
            # a retired one (perhaps leaked) is no way out.
            raise UpstreamUnavailable(
                f"no token signing key can be opened: start the gateway with the key of "
                f"{self.sealer.variable} that sealed them"
            )
        now = utcnow()
        for key, start in zip(self.keys, self.starts, strict=True):
            if start <= now:
                return key
        return self.keys[-1]

    def jwks(self) -> dict[str, Any]:
        """The public JWKS (never a private member of a key)."""
        document: dict[str, Any] = dict(KeySet(list(self.keys)).as_dict(private=False))
        for key in document["keys"]:
            key.setdefault("use", "sig")
            key.setdefault("alg", ALGORITHM)
        return document

    def take(self, rows: list[SigningKey]) -> None:
        """Signs and publishes ``rows`` (newest start first) from now on."""
        self.keys = [_opened(row, self.sealer) for row in rows]
        self.starts = [row.signs_from for row in rows]

    def take_readable(self, rows: list[SigningKey]) -> tuple[list[str], list[str]]:
        """As ``take``, with those of ``rows`` this gateway can open, or opened before
        (sealed again since under a key it lacks, a key is still the same key). Keys
        retired meanwhile go either way. The ids of the keys kept as opened before,
        and of those neither published nor signed with here."""
        known = {str(key.kid): key for key in self.keys}
        opened, kept, unreadable = [], [], []
        for row in rows:
            try:
                opened.append((_opened(row, self.sealer), row.signs_from))
            except UnreadableSigningKeys:
                if row.kid in known:
                    opened.append((known[row.kid], row.signs_from))
                    kept.append(row.kid)
                else:
                    unreadable.append(row.kid)
        self.keys = [key for key, _ in opened]
        self.starts = [start for _, start in opened]
        return kept, unreadable


def _new_key(signs_from: datetime, sealer: Sealer) -> SigningKey:
    key = RSAKey.generate_key(KEY_SIZE, parameters={"use": "sig", "alg": ALGORITHM}, auto_kid=True)
    return SigningKey(kid=str(key.kid), private_jwk=_stored(key, sealer), signs_from=signs_from)


async def load_signer(session: AsyncSession, sealer: Sealer | None = None) -> Signer:
    """The stored signing keys; the first start creates one and keeps it. With a
    ``sealer`` ready, keys stored unsealed are sealed now (retired ones too), and when
    it is replacing a key, the sealed ones are sealed again under the new one.

    An advisory lock serialises the check and the insert, so replicas starting at
    once end with one key between them.
    """
    sealer = sealer or _unsealed()
    repository = KeyRepository(session)
    await repository.lock()
    if sealer.ready:
        for row in await repository.every_key():
            if SEALED not in row.private_jwk:
                row.private_jwk = _stored(RSAKey.import_key(row.private_jwk), sealer)
            elif sealer.replacing:
                row.private_jwk = _sealed_again(row, sealer)
        await session.flush()
    else:
        log.warning("token signing keys are stored unsealed: set %s to seal them", sealer.variable)
    stored = await repository.active()
    if not stored:
        row = _new_key(utcnow(), sealer)
        await repository.add(row)
        stored = [row]
    signer = Signer([], [], sealer)
    signer.take(stored)
    return signer


async def rotate(session: AsyncSession, immediately: bool, sealer: Sealer) -> SigningKey:
    """Adds the next signing key; ``immediately`` also retires every other one."""
    repository = KeyRepository(session)
    await repository.lock()
    now = utcnow()
    others = await repository.active()
    row = _new_key(now if immediately else now + PUBLISH_AHEAD, sealer)
    await repository.add(row)
    if immediately and others:
        await repository.retire([other.kid for other in others])
    return row


async def unretired(session: AsyncSession, token_lifetime: timedelta) -> list[SigningKey]:
    """The keys to publish, newest start first, retiring those no valid token can name:
    the ones before a key that has signed for longer than ``token_lifetime``."""
    repository = KeyRepository(session)
    await repository.lock()
    rows = await repository.active()
    now = utcnow()
    for position, row in enumerate(rows):
        if row.signs_from <= now - token_lifetime - RETIRE_LEEWAY:
            superseded = rows[position + 1 :]
            if superseded:
                await repository.retire([old.kid for old in superseded])
            return rows[: position + 1]
    return rows


class KeyReloader:
    """Reads the keys again every ``RELOAD_SECONDS``, so that every gateway signs with
    and publishes what a rotation at any of them decided; ``after`` runs after each
    read (the gateway's own token check forgets retired keys)."""

    def __init__(
        self,
        db: Database,
        signer: Signer,
        token_lifetime: timedelta,
        after: Callable[[], Awaitable[None]],
        reload_seconds: float = RELOAD_SECONDS,
    ) -> None:
        self.db = db
        self.signer = signer
        self.token_lifetime = token_lifetime
        self.after = after
        self.reload_seconds = reload_seconds
        self._task: asyncio.Task[None] | None = None

    async def reload(self) -> None:
        async with self.db.session() as session:
            rows = await unretired(session, self.token_lifetime)
        if rows:
            self._take(rows)
        await self.after()

    def _take(self, rows: list[SigningKey]) -> None:
        # Another replica may have sealed some under a key this one lacks (its sealing
        # key being replaced in the wrong order). A key read before is the same key; a
        # new one it cannot open is neither published nor signed with here; and keys
        # retired meanwhile (perhaps leaked) go all the same.
        kept, unreadable = self.signer.take_readable(rows)
        variable = self.signer.sealer.variable
        if kept:
            log.warning(
                "token signing keys %s are sealed under a key of %s this gateway lacks; "
                "it signs on with them as read before",
                ", ".join(kept),
                variable,
            )
        if unreadable:
            log.error(
                "token signing keys %s cannot be opened: no key of %s sealed them; they "
                "are neither published nor signed with here",
                ", ".join(unreadable),
                variable,
            )

    def start(self) -> None:
        self._task = every(self.reload_seconds, self.reload, "gateway-signing-keys", "signing keys")

    async def stop(self) -> None:
        await stop_task(self._task)
