from __future__ import annotations

from sqlalchemy import func
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from services.gateway.users.emails import stored_spellings
from services.gateway.users.models import User


class UserRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, user: User) -> User:
        self.session.add(user)
        await self.session.flush()
        return user

    async def hold_email(self, tenant_id: str, email: str) -> None:
        """Until the transaction ends: two requests adding one mailbox (a double click,
        a retry after a slow answer) check and insert one after the other, so the
        second finds the first's user instead of breaking the unique index."""
        key = f"gateway.user-email:{tenant_id}:{email}"
        await self.session.execute(select(func.pg_advisory_xact_lock(func.hashtext(key))))

    async def get(self, user_id: str) -> User | None:
        return await self.session.get(User, user_id)

    async def lock(self, user_id: str, *, share: bool = False) -> User | None:
        """The user, read afresh and locked until the transaction ends: a token minted
        from its claims and a change of them (which ends its sign-ins) go one after the
        other, never both from what the other has not yet written."""
        locked = select(User).where(col(User.id) == user_id).with_for_update(read=share)
        found: User | None = (
            await self.session.execute(locked.execution_options(populate_existing=True))
        ).scalar_one_or_none()
        return found

    async def by_email(self, tenant_id: str, email: str) -> User | None:
        """The tenant's user by that address, however it is spelled (``canonical_email``):
        addresses are unique within a tenant only."""
        result = await self.session.execute(
            select(User).where(
                col(User.tenant_id) == tenant_id,
                func.lower(col(User.email)).in_(stored_spellings(email)),
            )
        )
        return result.scalar_one_or_none()

    async def of_tenant(self, tenant_id: str) -> list[User]:
        result = await self.session.execute(
            select(User).where(col(User.tenant_id) == tenant_id).order_by(col(User.email))
        )
        return list(result.scalars().all())
