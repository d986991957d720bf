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

log = logging.getLogger(__name__)
PROFILE_PATH = "/internal/tenants/{tenant_id}/profile"


class TenantCurrencies:
    def __init__(self, gateway_url: str, client: httpx.AsyncClient) -> None:
        self.gateway_url = gateway_url.rstrip("/")
        self.client = client
        self._known: dict[str, str] = {}

    async def reporting_currency(self, request: Request, tenant_id: str) -> str | None:
        """The tenant's currency; None when the gateway cannot say (the answer then
        falls back to the period's dominant currency)."""
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
            return None
        if response.status_code != 200:
            return None
        currency = str(response.json()["reporting_currency"])
        self._known[tenant_id] = currency
        return currency
