"""The per-request GraphQL context: built once, verifying the caller lazily."""

from __future__ import annotations

from dataclasses import dataclass, field

import httpx
from fastapi import Request
from strawberry.fastapi import BaseContext

from shared.auth import Principal, current_principal


@dataclass
class Context(BaseContext):
    request: Request
    http: httpx.AsyncClient
    metrics_url: str
    _principal: Principal | None = field(default=None, init=False)

    async def principal(self) -> Principal:
        if self._principal is None:
            self._principal = await current_principal(self.request)
        return self._principal

    @property
    def authorization(self) -> str:
        return self.request.headers.get("authorization", "")


async def get_context(request: Request) -> Context:
    settings = request.app.state.settings
    return Context(request=request, http=request.app.state.http, metrics_url=settings.metrics_url)
