"""Platform credentials at rest, sealed with ``LODESTAR_INGEST_CREDENTIALS_KEY``; only
ingest ever opens them."""

from __future__ import annotations

import logging
from typing import Any

import asyncpg

from services.ingest.config import CREDENTIALS_KEY_VARIABLE
from shared.errors import UpstreamUnavailable
from shared.sealing import SealedWithAnotherKey, Sealer

log = logging.getLogger(__name__)


class CredentialBox:
    def __init__(self, key: str) -> None:
        self._sealer = Sealer(key, CREDENTIALS_KEY_VARIABLE)

    @property
    def ready(self) -> bool:
        return self._sealer.ready

    @property
    def replacing(self) -> bool:
        """Whether older keys are given, whose credentials are to be sealed again."""
        return self._sealer.replacing

    def sealed_again(self, sealed: bytes) -> bytes | None:
        """``sealed`` under the newest key; None when no key given opens it."""
        try:
            return self._sealer.sealed_again(sealed)
        except SealedWithAnotherKey:
            return None

    def readable(self, sealed: bytes) -> bytes | None:
        """``sealed`` as it is when a key given opens it; else None."""
        try:
            self._sealer.open(sealed)
        except SealedWithAnotherKey:
            return None
        return sealed

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


# A start names at most this many of the credentials it cannot read, then counts them.
MAX_IDS_NAMED = 10


async def check_stored_credentials(conn: asyncpg.Connection, box: CredentialBox) -> None:
    """At start: when the key is being replaced, every stored credential is sealed again
    under the new one, so that the old key can go. Whether or not, those no key given
    opens are named in an error: a replica that sealed under a key this one lacks, or a
    key dropped too early, would otherwise leave stores unsynced without a word."""
    async with conn.transaction():
        rows = await conn.fetch(
            "SELECT id, credentials FROM connections ORDER BY id"
            + (" FOR UPDATE" if box.replacing else "")
        )
        if not rows:
            return
        if not box.ready:
            log.error(
                "%d platform credentials are stored and none can be read: %s is unset",
                len(rows),
                CREDENTIALS_KEY_VARIABLE,
            )
            return
        # Under the newest key when replacing; else only opened, to know they can be.
        check = box.sealed_again if box.replacing else box.readable
        sealed = [(row["id"], check(bytes(row["credentials"]))) for row in rows]
        resealed = [(id_, again) for id_, again in sealed if again is not None]
        if box.replacing:
            await conn.execute(
                "UPDATE connections c SET credentials = s.credentials "
                "FROM unnest($1::text[], $2::bytea[]) AS s(id, credentials) WHERE c.id = s.id",
                [id_ for id_, _ in resealed],
                [again for _, again in resealed],
            )
            log.info("platform credentials sealed again under the newest key: %d", len(resealed))
    unreadable = [id_ for id_, again in sealed if again is None]
    if unreadable:
        named = ", ".join(unreadable[:MAX_IDS_NAMED])
        more = len(unreadable) - MAX_IDS_NAMED
        log.error(
            "%d platform credentials are sealed with no key of %s and cannot be read: %s%s",
            len(unreadable),
            CREDENTIALS_KEY_VARIABLE,
            named,
            f" and {more} more" if more > 0 else "",
        )
