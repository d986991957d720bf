from __future__ import annotations

from datetime import datetime

from sqlalchemy import ARRAY, Column, Text
from sqlmodel import Field, SQLModel

from shared.time import utcnow


class Grant(SQLModel, table=True):
    """A seller's permission for an agency tenant to reach some of its stores."""

    __tablename__ = "grants"

    id: str = Field(primary_key=True)
    tenant_id: str = Field(foreign_key="tenants.id")
    agency_tenant_id: str = Field(foreign_key="tenants.id")
    stores: list[str] = Field(sa_column=Column(ARRAY(Text), nullable=False))
    scopes: list[str] = Field(sa_column=Column(ARRAY(Text), nullable=False))
    expires_at: datetime | None = None
    created_by: str
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    revoked_at: datetime | None = None

    def status_at(self, now: datetime) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"
