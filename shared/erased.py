"""Tenants a service has erased lately, refused until their tokens have expired.

An erased tenant's access tokens still verify until they expire, and its events may
still be on their way through the broker. Without this, a push or a late event would
bring rows of the tenant back right after the erasure. Kept in memory on purpose: it
must hold no row of the tenant, and tokens outlive it by at most their own lifetime.
"""

from __future__ import annotations

import time
from collections.abc import Callable

# Longer than any access token lives (client credentials: 1 h by default).
REFUSE_FOR_SECONDS = 2 * 3600


class RecentlyErased:
    def __init__(self, seconds: float = REFUSE_FOR_SECONDS) -> None:
        self.seconds = seconds
        self._erased_at: dict[str, float] = {}

    def add(self, tenant_id: str) -> None:
        self._erased_at[tenant_id] = time.monotonic()

    def __contains__(self, tenant_id: object) -> bool:
        if not isinstance(tenant_id, str):
            return False
        erased_at = self._erased_at.get(tenant_id)
        if erased_at is None:
            return False
        if time.monotonic() - erased_at > self.seconds:
            del self._erased_at[tenant_id]
            return False
        return True


class ErasedTenants:
    """What a service refuses as erased: the tenants it erased lately, and those the
    gateway lists as erased (read with the revoked tokens every second), which a
    service that restarted since an erasure no longer holds itself."""

    def __init__(self, listed_by_gateway: Callable[[str], bool]) -> None:
        self.recent = RecentlyErased()
        self.listed_by_gateway = listed_by_gateway

    def add(self, tenant_id: str) -> None:
        self.recent.add(tenant_id)

    def __contains__(self, tenant_id: object) -> bool:
        if not isinstance(tenant_id, str):
            return False
        return tenant_id in self.recent or self.listed_by_gateway(tenant_id)
