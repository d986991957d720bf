"""Password guessing at the sign-in page: an address that failed too often rests.

Counted per tenant and address, known or not, so the pause tells no one whether an
account exists; a successful sign-in forgets the failures. Someone who knows an
address can keep its owner out for a while by failing on purpose: a pause that ends
by itself is the usual price of slowing a guesser down.
"""

from __future__ import annotations

import math
from datetime import timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

# Failures in a row (each within this long of the one before) before the address rests.
MAX_FAILURES = 10
PAUSE = timedelta(minutes=15)


class SignInThrottle:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def seconds_to_wait(self, tenant_id: str, email: str) -> int:
        """How long the address must rest before it may try again; 0 when it may now."""
        left = await self.session.scalar(
            text(
                "SELECT extract(epoch FROM last_failed_at + CAST(:pause AS interval) - now()) "
                "FROM sign_in_failures "
                "WHERE tenant_id = :tenant AND email = :email AND failures >= :most"
            ),
            {"tenant": tenant_id, "email": email.lower(), "pause": PAUSE, "most": MAX_FAILURES},
        )
        return max(0, math.ceil(left)) if left is not None else 0

    async def failed(self, tenant_id: str, email: str) -> None:
        """Counts a failure; one long after the last starts the count again."""
        await self.session.execute(
            text(
                """
                INSERT INTO sign_in_failures AS f (tenant_id, email, failures, last_failed_at)
                VALUES (:tenant, :email, 1, now())
                ON CONFLICT (tenant_id, email) DO UPDATE SET
                    failures = CASE WHEN f.last_failed_at < now() - CAST(:pause AS interval) THEN 1
                                    ELSE f.failures + 1 END,
                    last_failed_at = now()
                """
            ),
            {"tenant": tenant_id, "email": email.lower(), "pause": PAUSE},
        )

    async def signed_in(self, tenant_id: str, email: str) -> None:
        await self.session.execute(
            text("DELETE FROM sign_in_failures WHERE tenant_id = :tenant AND email = :email"),
            {"tenant": tenant_id, "email": email.lower()},
        )


async def forget_rested(session: AsyncSession) -> None:
    """Deletes the counts of addresses whose last failure is a pause ago: the next
    failure would count from one again. Made-up addresses never sign in, and their
    counts would otherwise be kept for ever."""
    await session.execute(
        text(
            "DELETE FROM sign_in_failures WHERE last_failed_at < now() - CAST(:pause AS interval)"
        ),
        {"pause": PAUSE},
    )
