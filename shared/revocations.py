"""Access tokens revoked before they expire, for the services that verify tokens
themselves: the gateway keeps the revocations, and each service reads them from it
again every ``RELOAD_SECONDS``, so a revoked token is refused on a service's own port
too, not only through the public base URL."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Callable

import httpx

from shared.tasks import stop_task

log = logging.getLogger(__name__)

REVOKED_TOKENS_PATH = "/internal/revoked-tokens"
RELOAD_SECONDS = 1.0
# A service often starts before the gateway listens: only a gateway away this long is
# worth a warning.
AWAY_SECONDS = 10.0
# How long a service starting waits for its first read.
FIRST_READ_SECONDS = 3.0
# How old the last list read may grow, the gateway away, before tokens are refused: a
# token revoked meanwhile would be taken for as long as the list is not read again.
STALE_SECONDS = 10.0
# What a read that failed raises: the gateway away, or an answer that is no list.
UNREADABLE: tuple[type[Exception], ...] = (httpx.HTTPError, ValueError, KeyError, TypeError)


def revocation_digest(revoked_id: str) -> str:
    """What the gateway lists for a revoked token id or client: the list is read
    without a token, so it names no client and no token, only digests a service
    compares with those of the tokens it is shown."""
    return hashlib.sha256(revoked_id.encode()).hexdigest()


class GatewayRevocations:
    """The ids (jti) of the tokens the gateway knows revoked and not yet expired."""

    def __init__(
        self,
        gateway_url: str,
        client: httpx.AsyncClient,
        reload_seconds: float = RELOAD_SECONDS,
        away_seconds: float = AWAY_SECONDS,
        on_signing_keys: Callable[[frozenset[str]], None] | None = None,
    ) -> None:
        self.url = gateway_url.rstrip("/") + REVOKED_TOKENS_PATH
        self.client = client
        # Told the ids of the keys the gateway publishes, with each read: a key retired
        # at once (a rotation for a leaked key) stops counting within a second.
        self.on_signing_keys = on_signing_keys
        self.reload_seconds = reload_seconds
        self.away_seconds = away_seconds
        self._revoked: frozenset[str] = frozenset()
        # The erased tenants, as digests of their ids: refused by a service that
        # restarted since and so missed the erasure's message.
        self._erased: frozenset[str] = frozenset()
        self._etag: str | None = None
        # Whether the list has been read since the service started, and when last.
        self.read = False
        self._read_at = 0.0
        self._task: asyncio.Task[None] | None = None

    def __contains__(self, revoked_id: object) -> bool:
        return isinstance(revoked_id, str) and revocation_digest(revoked_id) in self._revoked

    @property
    def unknown(self) -> str | None:
        """Why the revocations in force are not known now, or None: tokens are not
        taken meanwhile (see shared.auth)."""
        if not self.read:
            return "not read from the gateway yet"
        if (age := time.monotonic() - self._read_at) > STALE_SECONDS:
            return f"not read from the gateway for {age:.0f} s"
        return None

    def erased(self, tenant_id: str) -> bool:
        """Whether the gateway lists the tenant as erased."""
        return revocation_digest(tenant_id) in self._erased

    async def load(self) -> None:
        # The list as last read, unless it changed since: most seconds, nothing did.
        held = {"If-None-Match": self._etag} if self._etag else {}
        response = await self.client.get(self.url, headers=held)
        if response.status_code == 304:
            self.read, self._read_at = True, time.monotonic()
            return
        response.raise_for_status()
        listed = response.json()
        self._revoked = frozenset(str(jti) for jti in listed["revoked"])
        self._erased = frozenset(str(tenant) for tenant in listed.get("erased", ()))
        kids = listed.get("signing_keys")
        if self.on_signing_keys is not None and isinstance(kids, list):
            self.on_signing_keys(frozenset(str(kid) for kid in kids))
        self._etag = response.headers.get("etag")
        self.read, self._read_at = True, time.monotonic()

    async def start(self) -> None:
        """Reads the list once before the first request is taken, when the gateway
        answers within ``FIRST_READ_SECONDS`` (it may be restarting too: until the list
        is read, tokens are refused with 503), then every ``reload_seconds``."""
        with contextlib.suppress(*UNREADABLE, TimeoutError):
            async with asyncio.timeout(FIRST_READ_SECONDS):
                await self.load()
        self._task = asyncio.create_task(self._reload(), name="revoked-tokens")

    async def stop(self) -> None:
        await stop_task(self._task)

    async def _reload(self) -> None:
        away_since: float | None = None
        warned = False
        while True:
            try:
                await self.load()
                away_since, warned = None, False
            except UNREADABLE as exc:
                # Said once, not every second; past STALE_SECONDS no token is taken.
                now = time.monotonic()
                away_since = now if away_since is None else away_since
                if not warned and now - away_since >= self.away_seconds:
                    log.warning("revoked tokens cannot be read from the gateway: %s", exc)
                    warned = True
            await asyncio.sleep(self.reload_seconds)
