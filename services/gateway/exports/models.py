from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Column
from sqlmodel import Field, SQLModel

from shared.time import utcnow


class Export(SQLModel, table=True):
    """One archive of all a tenant's data, built in the background.

    The archive itself is in ``export_parts``, not mapped: the repository writes it
    once and reads it a part at a time, so loading an export never loads its archive.
    """

    __tablename__ = "exports"

    id: str = Field(primary_key=True)
    tenant_id: str
    requested_by: str
    status: str = "running"
    tables_done: int = 0
    tables_total: int = 0
    archive_sha256: str | None = None
    size_bytes: int | None = Field(default=None, sa_column=Column("bytes", BigInteger))
    error: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
    heartbeat_at: datetime = Field(default_factory=utcnow)
    finished_at: datetime | None = None
