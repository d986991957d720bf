"""Access tokens revoked before they expire, refused wherever the gateway sees them.

Every public request passes the gateway, which keeps the revoked tokens' ids in memory
until they expire: added at revocation, and read again from ``revoked_access_tokens``
at start and every ``RELOAD_SECONDS``, so a revocation at another gateway counts too.
The services, which verify tokens by their signature, read the ids from it
(``shared.revocations``).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Iterable
from datetime import datetime

import orjson
from fastapi import Request
from sqlalchemy import delete
from sqlmodel import col, select

from services.gateway.oauth.sessions import IssuedAccessToken, Revoked, RevokedAccessToken
from services.gateway.oauth.throttle import forget_rested
from shared.db import Database
from shared.revocations import revocation_digest
from shared.tasks import every, stop_task
from shared.time import utcnow

log = logging.getLogger(__name__)

RELOAD_SECONDS = 10.0
# What the list's answer is made of: its version, the signing keys, the erased tenants
# and the minute (ids expire).
_AnswerKey = tuple[int, tuple[str, ...], tuple[str, ...], int]


class RevokedTokens:
    def __init__(self, db: Database, reload_seconds: float = RELOAD_SECONDS) -> None:
        self.db = db
        self.reload_seconds = reload_seconds
        self._expires: dict[str, datetime] = {}
        # Each id's digest, worked out once: every service asks for all of them every
        # second, and a tenant revoking many tokens would make each answer dearer.
        self._digests: dict[str, str] = {}
        self._task: asyncio.Task[None] | None = None
        # Moves with every change of the list: the answer's bytes and tag are kept per
        # version, so that the services' every-second asks and anyone's cost no more
        # than sending them (a tenant revoking thousands of tokens made each answer cost
        # 100 ms of this process's one event loop).
        self._version = 0
        self._answer: tuple[_AnswerKey, str, bytes] | None = None

    def add(self, jti: str, expires_at: datetime) -> None:
        self._expires[jti] = expires_at
        self._version += 1

    def __contains__(self, jti: object) -> bool:
        if not isinstance(jti, str):
            return False
        expires = self._expires.get(jti)
        return expires is not None and expires > utcnow()

    def ids(self) -> list[str]:
        now = utcnow()
        return [jti for jti, expires in self._expires.items() if expires > now]

    def digests(self) -> list[str]:
        """The digests the services compare tokens with (``revocation_digest``), of the
        ids not expired yet."""
        digests = []
        for jti in self.ids():
            digest = self._digests.get(jti)
            if digest is None:
                digest = self._digests[jti] = revocation_digest(jti)
            digests.append(digest)
        if len(self._digests) > len(digests):
            live = set(self._expires)
            self._digests = {j: d for j, d in self._digests.items() if j in live}
        return digests

    def answer(self, signing_keys: list[str], erased: Iterable[str] = ()) -> tuple[str, bytes]:
        """The ETag and JSON body of the list with these signing key ids and erased
        tenants (digests of their ids); made again when any changes, and each minute,
        as ids expire."""
        tenants = tuple(sorted(erased))
        key = (self._version, tuple(signing_keys), tenants, int(time.monotonic() // 60))
        if self._answer is None or self._answer[0] != key:
            body = orjson.dumps(
                {
                    "revoked": self.digests(),
                    "signing_keys": signing_keys,
                    "erased": [revocation_digest(tenant) for tenant in tenants],
                }
            )
            self._answer = (key, f'"{hashlib.sha256(body).hexdigest()[:32]}"', body)
        return self._answer[1], self._answer[2]

    async def load(self) -> None:
        async with self.db.session() as session:
            result = await session.execute(
                select(RevokedAccessToken.jti, RevokedAccessToken.expires_at).where(
                    col(RevokedAccessToken.expires_at) > utcnow()
                )
            )
            loaded = {jti: expires for jti, expires in result.all()}
        # Added to, never replaced: a revocation this gateway made while the rows were
        # read (committed after the read) would otherwise be forgotten until the next
        # reload. Nothing revoked is ever taken back; it goes when it expires.
        now = utcnow()
        merged = {jti: expires for jti, expires in self._expires.items() if expires > now}
        merged.update(loaded)
        if merged != self._expires:
            self._expires = merged
            self._version += 1

    async def forget_expired(self) -> None:
        """Deletes the rows of tokens that have expired: no one can use them any more,
        revoked or not, and a sign-in never refreshed would leave its token's row; and
        the sign-in failures counted a pause ago (``forget_rested``)."""
        async with self.db.session() as session:
            for table in (RevokedAccessToken, IssuedAccessToken):
                await session.execute(delete(table).where(col(table.expires_at) <= utcnow()))
            await forget_rested(session)

    def start(self) -> None:
        self._task = every(
            self.reload_seconds, self._reload, "gateway-revoked-tokens", "revoked tokens"
        )

    async def stop(self) -> None:
        await stop_task(self._task)

    async def _reload(self) -> None:
        await self.load()
        await self.forget_expired()


def refuse_at_once(request: Request, revoked: Revoked) -> None:
    """Access tokens revoked with a sign-in are refused by this gateway from now on;
    the others read them back from the database within ``RELOAD_SECONDS``."""
    for jti, expires_at in revoked:
        request.app.state.revoked_tokens.add(jti, expires_at)
