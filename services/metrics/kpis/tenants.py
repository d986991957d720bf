"""The tenant's reporting currency, learnt from the gateway that owns tenants.

Asked with the caller's own token the first time a tenant's KPIs are asked for without
a currency and without a metric setting naming one; remembered after (a tenant's
reporting currency is fixed when it is created).
"""

from __future__ import annotations

import logging

import httpx
from fastapi import Request

from shared.auth import bearer_token
from shared.errors import RateLimited, UpstreamUnavailable

log = logging.getLogger(__name__)
PROFILE_PATH = "/internal/tenants/{tenant_id}/profile"
UNLEARNT = "the tenant's reporting currency could not be read from the gateway just now"


def _seconds(retry_after: str | None) -> int:
    return int(retry_after) if retry_after and retry_after.isdigit() else 1


class TenantCurrencies:
    def __init__(self, gateway_url: str, client: httpx.AsyncClient) -> None:
        self.gateway_url = gateway_url.rstrip("/")
        self.client = client
        self._known: dict[str, str] = {}

    async def reporting_currency(self, request: Request, tenant_id: str) -> str | None:
        """The tenant's currency; None for a tenant the gateway does not know (the
        answer then falls back to the period's dominant currency).

        A gateway that cannot answer now (away, or the caller at its rate limit there)
        fails the question: an answer in another currency, however plausible, would
        be a wrong number.
        """
        known = self._known.get(tenant_id)
        if known is not None:
            return known
        try:
            response = await self.client.get(
                self.gateway_url + PROFILE_PATH.format(tenant_id=tenant_id),
                headers={"Authorization": f"Bearer {bearer_token(request)}"},
            )
        except httpx.HTTPError as exc:
            log.warning("tenant currency unavailable: %s", exc)
            raise UpstreamUnavailable.for_now(UNLEARNT) from exc
        if response.status_code == 404:
            return None
        if response.status_code == 429:
            raise RateLimited(_seconds(response.headers.get("retry-after")))
        if response.status_code != 200:
            log.warning(
                "tenant currency unavailable: the gateway answered %s", response.status_code
            )
            raise UpstreamUnavailable.for_now(UNLEARNT)
        currency = str(response.json()["reporting_currency"])
        self._known[tenant_id] = currency
        return currency
