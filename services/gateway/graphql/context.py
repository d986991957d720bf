"""The per-request GraphQL context: built once, verifying the caller lazily."""

from __future__ import annotations

from dataclasses import dataclass, field

import httpx
from fastapi import Request
from strawberry.fastapi import BaseContext

from shared.auth import Principal, current_principal


@dataclass(frozen=True)
class UpstreamCall:
    """One GET a resolver made (its whole URL), and the ETag of the answer (empty: none)."""

    url: str
    etag: str


@dataclass
class Context(BaseContext):
    request: Request
    http: httpx.AsyncClient
    metrics_url: str
    _principal: Principal | None = field(default=None, init=False)
    # While an answer may be remembered, the calls its resolvers make (revalidation.py).
    upstream_calls: list[UpstreamCall] | None = field(default=None, init=False)
    # Scalars of KPI rows this request's fields have written out so far.
    kpi_cells: int = field(default=0, init=False)
    # The data versions each tenant's answers showed: fields of one request that read
    # different states of one tenant's data (a push landed between them) disagree.
    data_versions: dict[str, set[int]] = field(default_factory=dict, init=False)

    def saw(self, tenant: str, version: int) -> None:
        self.data_versions.setdefault(tenant, set()).add(version)

    def disagreed(self) -> bool:
        return any(len(versions) > 1 for versions in self.data_versions.values())

    def start_over(self) -> None:
        """Forgets what a run of the operation counted, to run it again."""
        self.kpi_cells = 0
        self.data_versions = {}

    def record(self, response: httpx.Response) -> None:
        if self.upstream_calls is not None:
            self.upstream_calls.append(
                UpstreamCall(
                    url=str(response.request.url),
                    etag=response.headers.get("etag", ""),
                )
            )

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
