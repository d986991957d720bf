"""Client bookkeeping of the authorization server: the platform-admin client."""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from services.gateway.oauth.repository import ClientRepository
from services.gateway.oauth.secrets import hash_secret, verify_secret
from services.gateway.oauth.sessions import revocation_end, revoke_access_token
from shared.auth import revoked_client_key
from shared.scopes import ALL_SCOPES
from shared.time import utcnow

log = logging.getLogger(__name__)


async def ensure_platform_admin(
    session: AsyncSession, client_id: str, client_secret: str, token_ttl_seconds: int
) -> None:
    """The platform-admin client from the environment exists, active, with that secret
    and every scope; a changed secret replaces the stored hash. A changed id revokes
    the client named before, and the tokens it was issued. Named again before those
    tokens have expired, it is active, but every token of it stays refused until then:
    its tokens cannot be told apart from ones minted with a secret that leaked."""
    repository = ClientRepository(session)
    existing = await repository.admin_secret_hash(client_id)
    if existing is not None and verify_secret(client_secret, existing):
        # Same secret: keep the hash, so restarts do not rewrite it for nothing.
        secret_hash = existing
    else:
        secret_hash = hash_secret(client_secret)
    await repository.upsert_platform_admin(client_id, secret_hash, list(ALL_SCOPES))
    if until := await revocation_end(session, revoked_client_key(client_id)):
        log.warning(
            "platform admin client %s was revoked when another was named: its tokens are "
            "refused until %s (name another id to work before)",
            client_id,
            until.isoformat(),
        )
    until = utcnow() + timedelta(seconds=token_ttl_seconds)
    for retired in await repository.retire_platform_admins_but(client_id):
        log.warning("platform admin client %s revoked: the environment names another", retired)
        await revoke_access_token(session, revoked_client_key(retired), None, until)
