from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Column
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from shared.time import utcnow


class Erasure(SQLModel, table=True):
    """A tenant's erasure and which services have confirmed it.

    The proof that the tenant was erased, and so the one row anywhere that keeps the
    erased tenant's id (with who asked and when; nothing of its data).
    """

    __tablename__ = "erasures"

    id: str = Field(primary_key=True)
    tenant_id: str
    requested_by: str
    requested_at: datetime = Field(default_factory=utcnow)
    # {"<service>": {"status": "pending"|"done", "rows_deleted": n, "finished_at": iso}}
    services: dict[str, Any] = Field(sa_column=Column(JSONB, nullable=False))
    finished_at: datetime | None = None
