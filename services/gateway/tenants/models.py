from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from shared.time import utcnow


class Tenant(SQLModel, table=True):
    __tablename__ = "tenants"

    id: str = Field(primary_key=True)
    name: str
    reporting_currency: str
    timezone: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
