"""Client bookkeeping of the authorization server: the platform-admin client."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from services.gateway.oauth.repository import ClientRepository
from services.gateway.oauth.secrets import hash_secret, verify_secret
from shared.scopes import ALL_SCOPES


async def ensure_platform_admin(session: AsyncSession, client_id: str, client_secret: str) -> None:
    """The platform-admin client from the environment exists, active, with that secret
    and every scope; a changed secret replaces the stored hash."""
    repository = ClientRepository(session)
    existing = await repository.admin_secret_hash(client_id)
    if existing is not None and verify_secret(client_secret, existing):
        # Same secret: keep the hash, so restarts do not rewrite it for nothing.
        secret_hash = existing
    else:
        secret_hash = hash_secret(client_secret)
    await repository.upsert_platform_admin(client_id, secret_hash, list(ALL_SCOPES))
