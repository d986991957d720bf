from __future__ import annotations

from sqlalchemy import any_, literal, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from services.gateway.oauth.models import OAuthClient, SigningKey
from shared.scopes import PLATFORM_ADMIN
from shared.time import utcnow


class ClientRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get_active(self, client_id: str | None) -> OAuthClient | None:
        """The active client a request names; None when it names none."""
        if not client_id:
            return None
        result = await self.session.execute(
            select(OAuthClient).where(
                OAuthClient.client_id == client_id, col(OAuthClient.revoked_at).is_(None)
            )
        )
        return result.scalar_one_or_none()

    async def add(self, client: OAuthClient) -> None:
        self.session.add(client)
        await self.session.flush()

    async def of_tenant(self, tenant_id: str) -> list[OAuthClient]:
        result = await self.session.execute(
            select(OAuthClient)
            .where(OAuthClient.tenant_id == tenant_id)
            .order_by(col(OAuthClient.created_at), col(OAuthClient.client_id))
        )
        return list(result.scalars().all())

    async def of_tenant_for_update(self, tenant_id: str, client_id: str) -> OAuthClient | None:
        result = await self.session.execute(
            select(OAuthClient)
            .where(OAuthClient.tenant_id == tenant_id, OAuthClient.client_id == client_id)
            .with_for_update()
        )
        return result.scalar_one_or_none()

    async def upsert_platform_admin(
        self, client_id: str, secret_hash: str, scopes: list[str]
    ) -> None:
        statement = insert(OAuthClient).values(
            client_id=client_id,
            tenant_id=None,
            name="platform admin",
            secret_hash=secret_hash,
            scopes=scopes,
        )
        statement = statement.on_conflict_do_update(
            index_elements=["client_id"],
            set_={
                "secret_hash": statement.excluded.secret_hash,
                "scopes": scopes,
                "revoked_at": None,
            },
        )
        await self.session.execute(statement)

    async def retire_platform_admins_but(self, client_id: str) -> list[str]:
        """Revokes every other platform-admin client (tenantless, ``platform:admin``):
        the ids revoked."""
        result = await self.session.execute(
            update(OAuthClient)
            .where(
                col(OAuthClient.tenant_id).is_(None),
                col(OAuthClient.client_id) != client_id,
                col(OAuthClient.revoked_at).is_(None),
                literal(PLATFORM_ADMIN) == any_(col(OAuthClient.scopes)),
            )
            .values(revoked_at=utcnow())
            .returning(col(OAuthClient.client_id))
        )
        return list(result.scalars().all())

    async def admin_secret_hash(self, client_id: str) -> str | None:
        result = await self.session.execute(
            select(OAuthClient.secret_hash).where(OAuthClient.client_id == client_id)
        )
        return result.scalar_one_or_none()


class KeyRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def active(self) -> list[SigningKey]:
        result = await self.session.execute(
            select(SigningKey)
            .where(col(SigningKey.retired_at).is_(None))
            .order_by(col(SigningKey.signs_from).desc(), col(SigningKey.created_at).desc())
        )
        return list(result.scalars().all())

    async def every_key(self) -> list[SigningKey]:
        """Every key, retired or not."""
        result = await self.session.execute(select(SigningKey))
        return list(result.scalars().all())

    async def retire(self, kids: list[str]) -> None:
        await self.session.execute(
            update(SigningKey).where(col(SigningKey.kid).in_(kids)).values(retired_at=utcnow())
        )

    async def lock(self) -> None:
        """Serialises key creation: replicas starting at once end with one key."""
        await self.session.execute(
            text("SELECT pg_advisory_xact_lock(hashtext('gateway.signing_keys'))")
        )

    async def add(self, key: SigningKey) -> None:
        self.session.add(key)
        await self.session.flush()
