"""Permissions declared next to the fields they guard (the Saleor way)."""

from __future__ import annotations

from typing import Any

from strawberry.permission import BasePermission
from strawberry.types import Info

from services.gateway.graphql.context import Context


class HasScope(BasePermission):
    """The caller's token is valid and holds ``scope``.

    Raises rather than returning False, so the answer carries the shared codes:
    UNAUTHENTICATED for a missing or bad token, FORBIDDEN naming the scope.
    """

    def __init__(self, scope: str) -> None:
        self.scope = scope
        self.message = f"this field needs the scope {scope}"

    async def has_permission(self, source: Any, info: Info[Context, None], **kwargs: Any) -> bool:
        principal = await info.context.principal()
        principal.require(self.scope)
        return True
