"""FastAPI dependencies every service uses."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db import Database


async def db_session(request: Request) -> AsyncIterator[AsyncSession]:
    """The request's unit of work: committed when the endpoint returns, rolled back on error.

    Services and repositories never commit; this dependency does, before the
    response is sent, so a 2xx means the change is durable.
    """
    db: Database = request.app.state.db
    async with db.session() as session:
        yield session


# scope="function": the commit happens before the response is sent, so a 2xx means
# the change is durable and visible to the caller's next request. FastAPI's default
# ("request") would commit only after the response has gone out.
DbSession = Annotated[AsyncSession, Depends(db_session, scope="function")]
